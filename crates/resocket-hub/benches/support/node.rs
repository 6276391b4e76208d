//! The Node `ws` broadcast server (`node_broadcast.js`) as a child process, from the `ws` that
//! `scripts/deps/node-ws.sh` installs in `.deps/node`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A running `node_broadcast.js`; killed when dropped.
pub struct NodeServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// `ws://127.0.0.1:PORT/ws`.
    pub url: String,
}

impl NodeServer {
    /// Starts the server, with permessage-deflate when `deflate`; `Err` with the reason when
    /// Node or `ws` is missing, so that a bench can go on without it.
    pub fn start(deflate: bool) -> Result<NodeServer, String> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let modules = dir.join("../../.deps/node/node_modules");
        if !modules.join("ws").is_dir() {
            return Err(format!(
                "ws not found in {}: run scripts/deps/node-ws.sh",
                modules.display()
            ));
        }
        let mut command = Command::new("node");
        command
            .arg("--expose-gc")
            .arg(dir.join("benches/support/node_broadcast.js"))
            .env("NODE_PATH", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if deflate {
            command.arg("deflate");
        }
        let mut child = command.spawn().map_err(|e| format!("node: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| format!("node printed {line:?}, not a port"))?;
        Ok(NodeServer {
            child,
            stdin,
            stdout,
            url: format!("ws://127.0.0.1:{port}/ws"),
        })
    }

    /// The process id, for its RSS.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs a full garbage collection in the server and waits until it is done.
    pub fn gc(&mut self) {
        self.stdin.write_all(b"gc\n").expect("node stdin");
        self.stdin.flush().expect("node stdin");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("node stdout");
        assert_eq!(line.trim(), "gc", "node answered the gc request");
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
