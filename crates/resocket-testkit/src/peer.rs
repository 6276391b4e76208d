//! Independent WebSocket servers in other languages, Python `websockets` and Node `ws`, run as
//! child processes: the other end of an interop test, and the echo server a user would reach
//! for first.
//!
//! Both run the scripts in this crate's `peers/` folder and speak the same small command
//! protocol (see `peers/python_server.py`): binary messages and plain text are echoed;
//! `echo:`, `fragments:<n>`, `ping`, `later:<ms>:<text>` and `close:<code>:<reason>` ask for
//! more. The libraries
//! come from the repository's `.deps` folder, which `scripts/test` fills
//! (`scripts/deps/python-websockets.sh`, `scripts/deps/node-ws.sh`).

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

/// An independent implementation of RFC 6455 to run a [`PeerServer`] on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Python `websockets`, from `.deps/python`.
    Python,
    /// Node `ws`, from `.deps/node`.
    Node,
}

impl Peer {
    /// Both peers, for tests that run against each.
    pub const ALL: [Peer; 2] = [Peer::Python, Peer::Node];
}

/// A peer's server process on `127.0.0.1:0`, killed when dropped.
#[derive(Debug)]
pub struct PeerServer {
    child: Child,
    url: String,
}

impl PeerServer {
    /// Starts the peer's server and waits until it listens.
    ///
    /// # Panics
    ///
    /// When the peer's library is not installed in `.deps` (the message names the script
    /// that installs it), or the process does not start or print its port.
    pub fn start(peer: Peer) -> PeerServer {
        let kit_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let deps = kit_dir.join("../../.deps");
        let (program, script, env, installed, installer) = match peer {
            Peer::Python => (
                "python3",
                "python_server.py",
                ("PYTHONPATH", deps.join("python")),
                deps.join("python/websockets"),
                "python-websockets.sh",
            ),
            Peer::Node => (
                "node",
                "node_server.js",
                ("NODE_PATH", deps.join("node/node_modules")),
                deps.join("node/node_modules/ws"),
                "node-ws.sh",
            ),
        };
        assert!(
            installed.is_dir(),
            "{peer:?} server library not found at {}: run scripts/deps/{installer}",
            installed.display()
        );
        let mut child = Command::new(program)
            .arg(kit_dir.join("peers").join(script))
            .env(env.0, env.1)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("the server prints its port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{peer:?}: a port number, got {line:?}"));
        PeerServer {
            child,
            url: format!("ws://127.0.0.1:{port}/"),
        }
    }

    /// The server's `ws://127.0.0.1:PORT/` address.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        // Killing a process that already exited fails harmlessly; the wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
