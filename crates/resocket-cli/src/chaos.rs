//! `resocket chaos`: a fault-injecting proxy in front of any WebSocket server.
//!
//! It starts whether or not the upstream answers, and keeps running until stopped: a proxy
//! for testing reconnects must outlive the server behind it. While the upstream is down, each
//! client connection is accepted and closed at once (a `-v` line each).

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::{bail, Context as _};
use resocket_testkit::{Direction, Fault, FaultProxy};

use crate::cli::ChaosArgs;

/// How long the start-up check of the upstream waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let upstream = resolve(&args.upstream).await?;
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let proxy = FaultProxy::start_on(args.listen, upstream)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    if let Some(range) = &args.cut_after {
        let (min, max) = parse_pair(range, '-')?;
        proxy.set_random_cuts(min, max, seed);
    }
    if let Some(ms) = args.latency {
        proxy.set_latency(Duration::from_millis(ms));
    }
    let schedules = [
        (&args.blackhole, Fault::Blackhole),
        (&args.stall_down, Fault::Stall(Direction::ServerToClient)),
        (&args.stall_up, Fault::Stall(Direction::ClientToServer)),
        (&args.refuse, Fault::Refuse),
    ];
    for (spec, fault) in schedules {
        if let Some(spec) = spec {
            let (every, lasting) = parse_pair(spec, '/')?;
            proxy.schedule(fault, every, lasting, Some(seed));
        }
    }
    eprintln!(
        "[chaos] ws://{} -> {upstream} (seed {seed}); Ctrl-C to stop",
        proxy.addr()
    );
    // Said once, so that closed client connections are not a mystery; not a reason to stop.
    if let Err(error) = probe(upstream).await {
        eprintln!("[chaos] upstream {upstream} does not answer yet ({error}); client connections are closed until it does");
    }
    let mut status = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = status.tick() => eprintln!(
                "[chaos] connections {} cuts {} upstream unreachable {}",
                proxy.connections(),
                proxy.cuts(),
                proxy.upstream_failures()
            ),
        }
    }
    proxy.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// One TCP connection to the upstream, closed at once.
async fn probe(upstream: SocketAddr) -> anyhow::Result<()> {
    tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(upstream))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {PROBE_TIMEOUT:?}"))??;
    Ok(())
}

/// `ws://host:port/path` (or a bare `host:port`) to a socket address.
async fn resolve(upstream: &str) -> anyhow::Result<SocketAddr> {
    let authority = match upstream.parse::<http::Uri>() {
        Ok(uri) if uri.scheme().is_some() => {
            let host = uri
                .host()
                .context("upstream URL has no host")?
                .trim_matches(['[', ']'])
                .to_owned();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("wss") {
                    443
                } else {
                    80
                });
            format!("{host}:{port}")
        }
        _ if upstream.contains(':') && !upstream.contains('/') => upstream.to_owned(),
        _ => bail!("upstream {upstream:?} is not a ws:// URL or host:port"),
    };
    let mut addrs = tokio::net::lookup_host(authority.as_str())
        .await
        .with_context(|| format!("cannot resolve {authority}"))?;
    addrs
        .next()
        .with_context(|| format!("{authority} resolved to no address"))
}

/// `100-500` or `2000/300`: two millisecond values.
fn parse_pair(spec: &str, separator: char) -> anyhow::Result<(Duration, Duration)> {
    let (a, b) = spec
        .split_once(separator)
        .with_context(|| format!("{spec:?}: expected A{separator}B in milliseconds"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .with_context(|| format!("{v:?} is not a number of milliseconds"))
    };
    Ok((parse(a)?, parse(b)?))
}
