//! Files the hub rereads while serving (the revocation file, the JWKS file): a poll of each
//! file's modification time and size, and a reread when either changes.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// How often a watched file's modification time and size are checked.
const POLL: Duration = Duration::from_secs(1);

/// What a file looked like when it was last read; a change in either means it was rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// Reads and parses a file, with its stamp taken first, so that a write racing the read shows
/// up as a change on the next poll rather than being missed.
fn read<T>(path: &Path, parse: impl Fn(&str) -> io::Result<T>) -> io::Result<(Stamp, T)> {
    let stamp = stamp(path)?;
    Ok((stamp, parse(&std::fs::read_to_string(path)?)?))
}

/// Reads and parses a file once, for the hub's start.
///
/// # Errors
///
/// The file cannot be read, is not UTF-8, or `parse` refuses it.
pub(crate) fn load<T>(path: &Path, parse: impl Fn(&str) -> io::Result<T>) -> io::Result<T> {
    read(path, parse).map(|(_, value)| value)
}

/// Rereads `path` whenever its stamp changes, until `shutdown` turns `true`, and hands each
/// parsed value to `apply`. A file that disappears, cannot be read or does not parse leaves
/// the last value in force; `what` names the file in the warning logged when that starts.
pub(crate) async fn watch<T, P, A>(
    mut shutdown: watch::Receiver<bool>,
    path: PathBuf,
    what: &'static str,
    parse: P,
    mut apply: A,
) where
    T: Send + 'static,
    P: Fn(&str) -> io::Result<T> + Clone + Send + 'static,
    A: FnMut(T),
{
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The hub loaded the file when it was built; the first poll reads it again, which also
    // catches a change made in between.
    let mut seen: Option<Stamp> = None;
    let mut failing = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let file = path.clone();
        let parse = parse.clone();
        // File I/O blocks; it runs off the runtime's worker threads.
        let polled = tokio::task::spawn_blocking(move || {
            if Some(stamp(&file)?) == seen {
                return Ok(None);
            }
            read(&file, parse).map(Some)
        })
        .await;
        match polled {
            Ok(Ok(None)) => failing = false,
            Ok(Ok(Some((stamp, value)))) => {
                seen = Some(stamp);
                failing = false;
                apply(value);
            }
            Ok(Err(error)) => {
                if !failing {
                    tracing::warn!(%error, path = %path.display(), "cannot use the {what}; the last one read stays in force");
                }
                failing = true;
            }
            // The blocking task panicked; the next tick tries again.
            Err(_) => {}
        }
    }
}
