//! `resocket connect`: the resilient client on a terminal.
//!
//! stdin lines are queued as text messages (so lines typed during an outage are sent after the
//! reconnect, in order), every received message is one stdout line, and the connection's
//! story goes to stderr. On stdin EOF the queue is drained, the client closes with 1000, and the
//! command exits 0. A permanent failure (HTTP 403, a bad certificate) exits 1 with one line.

use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use resocket::{
    handshake::{Chain, SendMessage},
    Client, ConnectionEvent, Message,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::cli::ConnectArgs;

pub(crate) async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let mut builder = Client::builder(args.url.as_str()).configure(|c| {
        c.ping_interval =
            (args.ping_interval > 0.0).then(|| Duration::from_secs_f64(args.ping_interval));
        c.exit_on_first_failure = args.exit_on_first_failure;
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
    let (client, mut messages) = builder.connect()?;

    let mut events = client.events();
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

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let outcome = loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    if client.send(Message::text(line)).await.is_err() {
                        break client.closed().await;
                    }
                }
                // EOF (or an unreadable stdin): drain, close with 1000, done.
                Ok(None) | Err(_) => break client.close().await,
            },
            closed = client.closed() => break closed,
        }
    };
    // The printer ends when the message stream does, after the close.
    let _ = tokio::time::timeout(Duration::from_secs(5), printer).await;
    // The status narration stops here so the final line on stderr is the outcome.
    narrator.abort();
    let _ = narrator.await;
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            Ok(ExitCode::FAILURE)
        }
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
        ConnectionEvent::Connecting { attempt } => format!("connecting (attempt {attempt})"),
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
