//! One hub node of the cluster demo: `resocket serve --redis` run from this same program as a
//! child process, so that killing it is a real crash (SIGKILL), and started again on its port.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

/// How long a node gets to print its banner.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts to start a node again on its port (another program may hold it for a moment).
const RESTART_TRIES: usize = 5;

/// Whether a node is up and how often it was restarted, for the status line.
#[derive(Debug, Default)]
pub(super) struct NodeState {
    up: AtomicBool,
    restarts: AtomicU64,
}

impl NodeState {
    pub(super) fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    pub(super) fn restarts(&self) -> u64 {
        self.restarts.load(Relaxed)
    }
}

/// A hub node process, killed when dropped.
pub(super) struct Node {
    child: Option<Child>,
    port: u16,
    redis_url: String,
    state: Arc<NodeState>,
}

impl Node {
    /// Starts a node on a free port of 127.0.0.1, its rooms in `redis_url`.
    ///
    /// # Errors
    /// The node did not start.
    pub(super) async fn start(redis_url: &str) -> anyhow::Result<Node> {
        let (child, port) = spawn(0, redis_url).await?;
        let state = Arc::new(NodeState::default());
        state.up.store(true, Relaxed);
        Ok(Node {
            child: Some(child),
            port,
            redis_url: redis_url.to_owned(),
            state,
        })
    }

    pub(super) fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    pub(super) fn state(&self) -> Arc<NodeState> {
        self.state.clone()
    }

    /// SIGKILL: no Close frames, no drain; its clients find out from their sockets.
    pub(super) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
        self.state.up.store(false, Relaxed);
    }

    /// Starts the node again on its port.
    ///
    /// # Errors
    /// It did not come back.
    pub(super) async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await;
        let mut tries = 0;
        let child = loop {
            tries += 1;
            match spawn(self.port, &self.redis_url).await {
                Ok((child, _)) => break child,
                Err(error) if tries >= RESTART_TRIES => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        self.child = Some(child);
        self.state.restarts.fetch_add(1, Relaxed);
        self.state.up.store(true, Relaxed);
        Ok(())
    }
}

/// `resocket serve` on 127.0.0.1:`port` with the demo's settings; returns it once it printed
/// its banner, and its port.
async fn spawn(port: u16, redis_url: &str) -> anyhow::Result<(Child, u16)> {
    let exe = std::env::current_exe().context("cannot find this program to run hub nodes")?;
    let mut command = Command::new(exe);
    // The nodes take their settings from these flags only, not from the user's environment.
    for (name, _) in
        std::env::vars().filter(|(n, _)| n.starts_with("RESOCKET_") && n != "RESOCKET_LOG")
    {
        command.env_remove(name);
    }
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--allow-anonymous", "--rate-limit", "1000000"])
        // Long enough for any reconnect: a node's clients resume from history.
        .args(["--history", "1000000", "--redis", redis_url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().context("cannot start a hub node")?;
    let stderr = child.stderr.take().context("a node's stderr is piped")?;
    let mut lines = BufReader::new(stderr).lines();
    let banner = async {
        let mut last = String::new();
        while let Some(line) = lines.next_line().await? {
            if let Some(port) = banner_port(&line) {
                return anyhow::Ok(port);
            }
            last = line;
        }
        bail!("a hub node did not start: {last}")
    };
    let port = tokio::time::timeout(START_TIMEOUT, banner)
        .await
        .context("a hub node did not start in time")??;
    // The node's warnings (Redis down, a node gone) would garble the status line: read and
    // dropped, so the node never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, port))
}

/// The port in `[resocket] hub listening on http://127.0.0.1:PORT/ …`.
fn banner_port(line: &str) -> Option<u16> {
    line.split("http://127.0.0.1:")
        .nth(1)?
        .split('/')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::banner_port;

    #[test]
    fn the_port_comes_from_the_serve_banner() {
        let line = "[resocket] hub listening on http://127.0.0.1:40123/ (ws://127.0.0.1:40123/ws)";
        assert_eq!(banner_port(line), Some(40123));
        assert_eq!(banner_port("error: address in use"), None);
    }
}
