//! A throwaway `redis-server` process on a unix socket in its own temp dir, for tests of the
//! hub's Redis engine.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How long `redis-server` gets to answer its first `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process listening only on a unix socket (`--port 0`), without
/// persistence, killed and its directory removed when dropped.
///
/// A socket path needs no free port and cannot meet another test's server.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// `redis-server` is not installed (the message names `scripts/deps/redis.sh`), or it did
    /// not answer within ten seconds.
    pub fn start() -> io::Result<RedisServer> {
        let dir = scratch_dir("resocket-redis")?;
        let socket = dir.join("redis.sock");
        let child = spawn(&dir, &socket).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })?;
        let server = RedisServer { child, dir, socket };
        server.wait_for_ping()?;
        Ok(server)
    }

    /// Starts the server again on the same socket after [`kill`](Self::kill) (empty: nothing
    /// is persisted), and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.child = spawn(&self.dir, &self.socket)?;
        self.wait_for_ping()
    }

    fn wait_for_ping(&self) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.answers_ping() {
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "redis-server did not answer PING within 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// The server's URL, `redis+unix:///…/redis.sock`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// The server's unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Kills the server now (an outage); the socket stops answering.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(&self.socket) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-server` on `socket` only (`--port 0`), without persistence, its files in `dir`.
fn spawn(dir: &Path, socket: &Path) -> io::Result<Child> {
    redis_server(dir)
        .args(["--port", "0", "--unixsocket"])
        .arg(socket)
        .args(["--unixsocketperm", "700"])
        .spawn()
        .map_err(|e| not_installed(e, "redis-server"))
}

/// `redis-server` without persistence, its files in `dir`, its output discarded; the caller
/// adds where it listens.
pub(crate) fn redis_server(dir: &Path) -> Command {
    let mut command = Command::new("redis-server");
    command
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A new empty directory for one server's files, `<temp>/<prefix>-<pid>-<n>`, unique in this
/// machine's temp dir.
pub(crate) fn scratch_dir(prefix: &str) -> io::Result<PathBuf> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A spawn error of `program`, naming the script that installs it when it is missing.
pub(crate) fn not_installed(e: io::Error, program: &str) -> io::Error {
    if e.kind() == io::ErrorKind::NotFound {
        io::Error::new(
            e.kind(),
            format!("{program} is not installed; run scripts/deps/redis.sh"),
        )
    } else {
        e
    }
}
