//! Helpers shared by the CLI crate's integration tests.

// Each test file uses a different part of this module.
#[allow(dead_code)]
mod binary;
#[allow(dead_code)]
pub mod cluster;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use resocket_hub::Hub;

#[allow(unused_imports)]
pub use binary::{output, output_of, resocket, resocket_without_env, serve_on, serve_on_free_port};

/// Serves `hub` on 127.0.0.1:0 in the background until the test ends; returns its address.
#[allow(dead_code)]
pub async fn serve(hub: Hub) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    tokio::spawn(async move {
        hub.serve_with_shutdown(listener, std::future::pending())
            .await
    });
    addr
}

/// A fresh folder under the system's temporary folder, removed when dropped.
#[allow(dead_code)]
pub struct TempDir(PathBuf);

#[allow(dead_code)]
impl TempDir {
    /// Makes `<tmp>/resocket-cli-<name>-<pid>`, empty.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("resocket-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary folder");
        TempDir(dir)
    }

    /// Writes `contents` to the file `name` in the folder; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write a temporary file");
        path
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
