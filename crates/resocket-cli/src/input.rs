//! stdin, read in its own task: lines ahead of the send queue, and the end of input as a
//! separate signal.
//!
//! Sending waits while the client's queue is full (backpressure), and a reader that waited
//! with it would never see the end of input during an outage. Here the reader runs ahead of
//! the sender by a bounded read-ahead, and reports the end of input on its own channel, so
//! `connect` can start its drain deadline even while sending is blocked.

use std::sync::{
    atomic::{AtomicU64, Ordering::Relaxed},
    Arc,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore},
};

/// Lines read ahead of the send queue, at most.
pub(crate) const READ_AHEAD_LINES: usize = 1024;
/// Bytes read ahead of the send queue, at most (a longer line still goes through, alone).
pub(crate) const READ_AHEAD_BYTES: usize = 8 << 20;

/// One line of input, holding its share of the read-ahead until it is queued or dropped.
pub(crate) struct Line {
    pub(crate) text: String,
    _budget: OwnedSemaphorePermit,
}

/// The reading side of stdin.
pub(crate) struct Input {
    /// Lines in the order read; ends after the last one.
    pub(crate) lines_rx: mpsc::Receiver<Line>,
    /// Fires once the end of input (or an unreadable stdin) was reached.
    pub(crate) ended_rx: oneshot::Receiver<()>,
    /// Lines read so far; final once `ended_rx` fired.
    pub(crate) read: Arc<AtomicU64>,
}

impl Input {
    /// Starts reading stdin in a task of its own.
    pub(crate) fn stdin() -> Input {
        let (lines_tx, lines_rx) = mpsc::channel(READ_AHEAD_LINES);
        let (ended_tx, ended_rx) = oneshot::channel();
        let read = Arc::new(AtomicU64::new(0));
        tokio::spawn(read_lines(lines_tx, ended_tx, Arc::clone(&read)));
        Input {
            lines_rx,
            ended_rx,
            read,
        }
    }

    /// Lines read so far; final once `ended_rx` fired.
    pub(crate) fn lines_read(&self) -> u64 {
        self.read.load(Relaxed)
    }
}

async fn read_lines(
    lines_tx: mpsc::Sender<Line>,
    ended_tx: oneshot::Sender<()>,
    read: Arc<AtomicU64>,
) {
    let budget = Arc::new(Semaphore::new(READ_AHEAD_BYTES));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(text)) => {
                // At least one permit, so that empty lines count against the budget too.
                let share = text.len().clamp(1, READ_AHEAD_BYTES) as u32;
                let Ok(budget) = Arc::clone(&budget).acquire_many_owned(share).await else {
                    return;
                };
                read.fetch_add(1, Relaxed);
                if lines_tx
                    .send(Line {
                        text,
                        _budget: budget,
                    })
                    .await
                    .is_err()
                {
                    // The command stopped taking input: nothing left to report.
                    return;
                }
            }
            Ok(None) => break,
            Err(error) => {
                eprintln!(
                    "[resocket] cannot read stdin ({error}): treating it as the end of input"
                );
                break;
            }
        }
    }
    // Nobody waiting means the command is already on its way out.
    let _ = ended_tx.send(());
}
