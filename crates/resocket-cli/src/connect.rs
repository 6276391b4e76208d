//! `resocket connect`: the resilient client on a terminal.
//!
//! stdin lines are queued as text messages (so lines typed during an outage are sent after the
//! reconnect, in order), every received message is one stdout line, and the connection's
//! story goes to stderr. At the end of input the queue keeps draining, through reconnects, for
//! at most `--drain-timeout`; then the client closes with 1000. The exit status says whether
//! every line was delivered (0), a permanent failure ended it (1, HTTP 403, a bad certificate),
//! or lines were dropped (3, with the count on stderr): see [`crate::exit`].

use std::{cell::Cell, process::ExitCode, sync::atomic::Ordering::Relaxed, time::Duration};

use anyhow::Context as _;
use resocket::{
    handshake::{Chain, SendMessage},
    Client, ConnectionEvent, Error, Message,
};
use tokio::{io::AsyncWriteExt, time::Instant};

use crate::{cli::ConnectArgs, exit, input::Input};

/// How often the drain checks whether everything queued was written. The client counts
/// written messages but has no event for "the queue is empty", and a drain is short.
const DRAIN_CHECK: Duration = Duration::from_millis(10);

/// How the session with stdin ended.
enum End {
    /// Every line read was queued, and every queued line handed to a socket.
    Drained,
    /// The drain timeout passed first.
    TimedOut,
    /// The client closed on its own: a permanent failure.
    Closed(Result<(), Error>),
}

pub(crate) async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let mut builder = Client::builder_with_endpoints(&args.urls).configure(|c| {
        c.ping_interval =
            (args.ping_interval > 0.0).then(|| Duration::from_secs_f64(args.ping_interval));
        c.exit_on_first_failure = args.exit_on_first_failure;
        // The drain after the end of input is ours (bounded by --drain-timeout and surviving
        // reconnects); `close()` then drops whatever is left, and counts it.
        c.drain_on_close = false;
        if let Some(retries) = args.max_retries {
            c.backoff = c.backoff.clone().with_max_attempts(retries);
        }
    });
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("header {header:?} is not `Name: value`"))?;
        builder = builder.header(name.trim(), value.trim());
    }
    if let Some(token) = &args.token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    for protocol in &args.subprotocols {
        builder = builder.subprotocol(protocol.clone());
    }
    if !args.subscribe.is_empty() {
        let chain = args.subscribe.iter().fold(Chain::new(), |chain, msg| {
            chain.then(SendMessage::new(Message::text(msg.clone())))
        });
        builder = builder.handshake(chain);
    }
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        builder = builder.add_root_certificate_pem(pem);
    }
    if args.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        let read = |path: &std::path::PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        builder = builder.client_identity_pem(read(cert)?, read(key)?);
    }
    if let Some(proxy) = &args.proxy {
        builder = builder.proxy(proxy.clone());
    }
    if args.no_proxy_env {
        builder = builder.proxy_from_env(false);
    }
    // Unspawned until the narrator listens, so the first attempt's events are told too.
    let (client, mut messages, supervisor) = builder.build()?;
    let mut events = client.events();
    tokio::spawn(supervisor.run());
    let narrator = tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if let Some(line) = describe(&event) {
                eprintln!("[resocket] {line}");
            }
        }
    });

    let json = args.json;
    let printer = tokio::spawn(async move {
        let mut stdout = tokio::io::BufWriter::new(tokio::io::stdout());
        let mut batch = Vec::new();
        while messages.recv_many(&mut batch, 256).await > 0 {
            for msg in batch.drain(..) {
                let line = render(&msg, json);
                if stdout.write_all(line.as_bytes()).await.is_err()
                    || stdout.write_all(b"\n").await.is_err()
                {
                    return;
                }
            }
            // One flush per batch: a firehose stays fast, an interactive session stays live.
            if stdout.flush().await.is_err() {
                return;
            }
        }
    });

    let mut input = Input::stdin();
    let queued = Cell::new(0u64);
    let end = session(&client, &mut input, &queued, args.drain_timeout).await;
    // What to say if lines turn out undelivered, decided before `end` is taken apart.
    let why = match &end {
        End::TimedOut => format!(
            "still queued when the drain timeout ({:?}) passed",
            args.drain_timeout
        ),
        End::Drained => "written to a connection that died before confirming them".to_owned(),
        End::Closed(_) => "the client closed before sending them".to_owned(),
    };
    let outcome = match end {
        End::Closed(outcome) => outcome,
        End::Drained => match linger(&client, args.linger).await {
            Some(outcome) => outcome,
            None => client.close().await,
        },
        End::TimedOut => client.close().await,
    };
    // The printer ends when the message stream does, after the close.
    let _ = tokio::time::timeout(Duration::from_secs(5), printer).await;
    // The status narration stops here so the final line on stderr is the outcome.
    narrator.abort();
    let _ = narrator.await;
    if let Err(error) = outcome {
        eprintln!("error: {}", one_line(&error));
        return Ok(exit::code(exit::FAILURE));
    }
    // The counts are final: the client has closed, and the reader has seen the end of input
    // (or the session would not have ended without a failure).
    let read = input.lines_read();
    let counters = client.snapshot().counters;
    let never_queued = read.saturating_sub(queued.get());
    let undelivered = never_queued + counters.dropped + counters.unconfirmed;
    if undelivered == 0 {
        return Ok(exit::code(exit::SUCCESS));
    }
    eprintln!("error: {undelivered} of {read} line(s) of input not delivered: {why}");
    Ok(exit::code(exit::UNDELIVERED))
}

/// Feeds stdin to the client until the end of input has been drained, the drain timeout
/// passed, or the client closed on its own.
async fn session(client: &Client, input: &mut Input, queued: &Cell<u64>, drain: Duration) -> End {
    let Input {
        lines_rx,
        ended_rx,
        read,
    } = input;
    // Queuing runs as one future beside the rest, so that seeing the end of input never
    // cancels a send waiting for room (which would drop its line).
    let forward = async {
        while let Some(line) = lines_rx.recv().await {
            if client.send(Message::text(line.text)).await.is_err() {
                // Closed: the `closed()` branch below reports why.
                std::future::pending::<()>().await;
            }
            queued.set(queued.get() + 1);
        }
    };
    tokio::pin!(forward);
    let mut all_queued = false;
    let mut deadline: Option<Instant> = None;
    loop {
        if all_queued && handed_over(client) >= queued.get() {
            return End::Drained;
        }
        tokio::select! {
            biased;
            closed = client.closed() => return End::Closed(closed),
            () = sleep_until_or_never(deadline) => return End::TimedOut,
            _ = &mut *ended_rx, if deadline.is_none() => {
                let left = read.load(Relaxed).saturating_sub(handed_over(client));
                eprintln!(
                    "[resocket] end of input: delivering {left} queued line(s), for at most {drain:?}"
                );
                deadline = Some(Instant::now() + drain);
            }
            () = &mut forward, if !all_queued => all_queued = true,
            () = tokio::time::sleep(DRAIN_CHECK), if all_queued => {}
        }
    }
}

/// Waits until no message has arrived for `quiet` (between one and two `quiet`s, as it checks
/// the received count once per period), or the client closes on its own (its outcome).
///
/// A Close is the end of what a peer may expect to be asked, and many servers (Python's
/// `websockets` among them) drop the replies they have not sent yet once it arrives; a pipe
/// such as `echo '{"op":"subscribe"}' | resocket connect URL` wants those replies.
async fn linger(client: &Client, quiet: Duration) -> Option<Result<(), Error>> {
    if quiet.is_zero() {
        return None;
    }
    let mut received = client.snapshot().counters.messages_in;
    loop {
        tokio::select! {
            closed = client.closed() => return Some(closed),
            () = tokio::time::sleep(quiet) => {}
        }
        let now = client.snapshot().counters.messages_in;
        if now == received {
            return None;
        }
        received = now;
    }
}

/// Messages the client is done with: written, lost with a connection before their flush
/// completed, or dropped. Every queued message ends up in one of these counters.
fn handed_over(client: &Client) -> u64 {
    let counters = client.snapshot().counters;
    counters.messages_out + counters.unconfirmed + counters.dropped
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The error and its causes on one line.
pub(crate) fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors say their cause themselves (`RetriesExhausted` names the last error).
        if !line.ends_with(&cause_text) {
            line.push_str(": ");
            line.push_str(&cause_text);
        }
        source = cause.source();
    }
    line
}

fn describe(event: &ConnectionEvent) -> Option<String> {
    Some(match event {
        ConnectionEvent::Connecting {
            attempt, endpoint, ..
        } => format!("connecting to {endpoint} (attempt {attempt})"),
        ConnectionEvent::Ready { reconnect: false } => "connected".into(),
        ConnectionEvent::Ready { reconnect: true } => "reconnected".into(),
        ConnectionEvent::Disconnected { reason, .. } => {
            format!("disconnected: {}", one_line(reason))
        }
        ConnectionEvent::BackingOff { delay, .. } => format!("retrying in {delay:.1?}"),
        ConnectionEvent::Dropped { count, reason } => {
            format!("dropped {count} message(s): {reason:?}")
        }
        ConnectionEvent::Closed { error: None } => "closed".into(),
        ConnectionEvent::Closed { error: Some(_) } => return None,
        _ => return None,
    })
}

fn render(msg: &Message, json: bool) -> String {
    match (msg, json) {
        (Message::Text(text), false) => text.to_string(),
        (Message::Text(text), true) => {
            serde_json::json!({"type": "text", "data": text.as_str()}).to_string()
        }
        (Message::Binary(bytes), false) => format!("0x{}", hex(bytes)),
        (Message::Binary(bytes), true) => {
            serde_json::json!({"type": "binary", "hex": hex(bytes)}).to_string()
        }
        (other, _) => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_does_not_repeat_a_cause_the_error_already_names() {
        let error = resocket::Error::RetriesExhausted {
            attempts: 1,
            last: Box::new(resocket::Error::ServerClosed {
                frame: Some(resocket::CloseFrame {
                    code: 1000.into(),
                    reason: "".into(),
                }),
            }),
        };
        assert_eq!(
            one_line(&error),
            "gave up after 1 attempt: server closed the connection with code 1000"
        );
    }
}
