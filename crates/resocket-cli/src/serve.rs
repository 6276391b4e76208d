//! `resocket serve`: the hub, configured by flags and environment variables.

use std::process::ExitCode;

use anyhow::Context as _;
use resocket_hub::Hub;

use crate::cli::ServeArgs;

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut builder = Hub::builder();
    if let Some(secret) = &args.jwt_secret {
        builder = builder.jwt_secret(secret);
    }
    if args.allow_anonymous {
        let rooms: Vec<&str> = if args.anonymous_rooms.is_empty() {
            vec!["*"]
        } else {
            args.anonymous_rooms.iter().map(String::as_str).collect()
        };
        builder = builder
            .allow_anonymous(true)
            .anonymous_rooms(&rooms, &rooms);
    }
    // Without a list the hub accepts only pages it served itself (and clients that send no
    // Origin, which browsers always do).
    for origin in &args.origins {
        builder = builder.allow_origin(origin.clone());
    }
    if let Some(size) = args.max_message_size {
        builder = builder.max_message_size(size);
    }
    if let Some(rate) = args.rate_limit {
        builder = builder.rate_limit(rate, rate.saturating_mul(2));
    }
    if let Some(history) = args.history {
        builder = builder.history_len(history);
    }
    if let Some(budget) = args.history_budget {
        builder = builder.history_budget(budget);
    }
    if let Some(max) = args.max_rooms_per_client {
        builder = builder.max_rooms_per_client(max);
    }
    if let Some(path) = &args.revoked {
        builder = builder.revocation_file(path);
    }
    if let Some(secret) = &args.admin_secret {
        builder = builder.admin_secret(secret);
    }
    if let Some(max) = args.max_connections {
        builder = builder.max_connections(max);
    }
    let secs = std::time::Duration::from_secs;
    if let Some(t) = args.header_read_timeout {
        builder = builder.header_read_timeout(secs(t));
    }
    if let Some(t) = args.upgrade_timeout {
        builder = builder.upgrade_timeout(secs(t));
    }
    if let Some(max) = args.max_pending_upgrades {
        builder = builder.max_pending_upgrades(max);
    }
    if let Some(t) = args.close_timeout {
        builder = builder.close_timeout(secs(t));
    }
    if let Some(url) = &args.redis {
        builder = builder.redis(url.clone());
    }
    let hub = builder.build().context("hub settings rejected")?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |path: &std::path::PathBuf| {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            };
            Some(resocket_hub::server_config_from_pem(
                &read(cert)?,
                &read(key)?,
            )?)
        }
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    match tls {
        Some(tls) => {
            eprintln!("[resocket] hub listening on https://{addr}/ (wss://{addr}/ws)");
            hub.serve_tls(listener, tls).await?;
        }
        None => {
            eprintln!("[resocket] hub listening on http://{addr}/ (ws://{addr}/ws)");
            hub.serve(listener).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
