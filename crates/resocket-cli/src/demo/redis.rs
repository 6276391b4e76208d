//! The cluster demo's Redis: a `redis-server` child process on a free port of 127.0.0.1, with
//! an append-only file synced on every write, so that killing it loses nothing it acknowledged.

use std::{
    io,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    process::{Child, Command},
};

/// How long `redis-server` gets to answer its first `PING` (it replays its file first).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Free ports tried when the one picked is taken before `redis-server` binds it.
const PORT_TRIES: usize = 5;

/// A `redis-server` process of the demo's own, killed and its folder removed when dropped.
pub(super) struct LocalRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl LocalRedis {
    /// Starts `redis-server` (found on `PATH`) on a free port and waits until it answers.
    ///
    /// # Errors
    /// `redis-server` is not installed, or it did not come up.
    pub(super) async fn start() -> anyhow::Result<LocalRedis> {
        let dir = std::env::temp_dir().join(format!("resocket-demo-redis-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut last_error = None;
        for _ in 0..PORT_TRIES {
            let port = free_port().await?;
            let child = spawn(&dir, port)?;
            let mut redis = LocalRedis {
                child,
                port,
                dir: dir.clone(),
            };
            match redis.wait_until_up().await {
                Ok(()) => return Ok(redis),
                // Most likely the port was taken meanwhile: another one.
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    /// `redis://127.0.0.1:PORT`.
    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and starts it again on its port, from its file.
    ///
    /// # Errors
    /// It did not come back.
    pub(super) async fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill().await;
        self.child = spawn(&self.dir, self.port)?;
        self.wait_until_up().await
    }

    async fn wait_until_up(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        // Polled: nothing tells when an outside process starts answering.
        while !answers_ping(self.port).await {
            if let Some(status) = self.child.try_wait()? {
                bail!("redis-server exited ({status}) on port {}", self.port);
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer PING within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port on 127.0.0.1 nothing listens on now.
async fn free_port() -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

/// `redis-server` on 127.0.0.1:`port`, its append-only file in `dir`, synced on every write.
fn spawn(dir: &std::path::Path, port: u16) -> anyhow::Result<Child> {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "redis-server is not installed (not found on PATH); `demo --cluster` runs a \
                     Redis of its own: install Redis (e.g. `apt install redis-server`, or \
                     scripts/deps/redis.sh in the resocket repository), or run `demo` without \
                     --cluster"
                )
            } else {
                anyhow::Error::new(e).context("cannot start redis-server")
            }
        })
}

/// Whether 127.0.0.1:`port` answers `PING` with `PONG` (a Redis still loading its file does
/// not).
async fn answers_ping(port: u16) -> bool {
    let ping = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        s.read_exact(&mut reply).await?;
        io::Result::Ok(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Ok(true))
    )
}
