//! The tasks behind a test server or fault proxy: its accept loop and one task per connection,
//! stopped together.

use std::future::Future;
use std::sync::Mutex;

use tokio::task::{JoinHandle, JoinSet};

use crate::server::lock;

/// The connection tasks, and whether the owner stopped accepting new ones.
///
/// `closed` lives under the same lock as the set so that the accept loop can never spawn a task
/// after `stop` or `drop` aborted them all.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    set: JoinSet<()>,
    closed: bool,
}

impl Tasks {
    /// Spawns `task`, after reaping the tasks that ended; `false`, and nothing spawned, once
    /// stopped.
    pub(crate) fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) -> bool {
        if self.closed {
            return false;
        }
        while self.set.try_join_next().is_some() {}
        self.set.spawn(task);
        true
    }
}

/// Stops the accept loop and every connection task; returns once all have ended, so their
/// sockets are closed.
pub(crate) async fn stop(accept_task: &mut Option<JoinHandle<()>>, tasks: &Mutex<Tasks>) {
    if let Some(accept_task) = accept_task.take() {
        accept_task.abort();
        // The only outcome is a cancellation, which is what was asked for.
        let _ = accept_task.await;
    }
    let mut set = {
        let mut tasks = lock(tasks);
        tasks.closed = true;
        std::mem::take(&mut tasks.set)
    };
    set.shutdown().await;
}

/// Aborts the accept loop and every connection task without waiting for them (on drop).
pub(crate) fn abort(accept_task: &mut Option<JoinHandle<()>>, tasks: &Mutex<Tasks>) {
    if let Some(accept_task) = accept_task.take() {
        accept_task.abort();
    }
    let mut tasks = lock(tasks);
    tasks.closed = true;
    tasks.set.abort_all();
}
