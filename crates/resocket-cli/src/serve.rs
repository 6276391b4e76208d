//! `resocket serve`: the hub, configured by flags, environment variables and a config file.

use std::process::ExitCode;

use anyhow::Context as _;
use resocket_hub::Hub;

use crate::{cli::ServeArgs, exit, serve_config};

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = serve_config::resolve(&args)?;
    if args.print_config {
        print!("{}", serve_config::to_toml(&settings)?);
        return Ok(exit::code(exit::SUCCESS));
    }
    let (listen, tls, auth, limits, history, engine) = (
        &settings.listen,
        &settings.tls,
        &settings.auth,
        &settings.limits,
        &settings.history,
        &settings.engine,
    );
    let mut builder = Hub::builder();
    if let Some(secret) = &auth.jwt_secret {
        builder = builder.jwt_secret(secret);
    }
    for path in &auth.jwt_public_keys {
        builder = builder.jwt_public_key(path);
    }
    if let Some(path) = &auth.jwks {
        builder = builder.jwks_file(path);
    }
    for issuer in &auth.jwt_issuers {
        builder = builder.jwt_issuer(issuer);
    }
    for audience in &auth.jwt_audiences {
        builder = builder.jwt_audience(audience);
    }
    if !auth.jwt_algorithms.is_empty() {
        let algorithms = auth
            .jwt_algorithms
            .iter()
            .map(|name| name.parse::<resocket_hub::JwtAlgorithm>())
            .collect::<Result<Vec<_>, _>>()
            .context("auth.jwt_algorithms")?;
        builder = builder.jwt_algorithms(&algorithms);
    }
    if let Some(secs) = auth.jwt_leeway {
        builder = builder.token_leeway(std::time::Duration::from_secs(secs));
    }
    if auth.allow_anonymous {
        let rooms: Vec<&str> = auth.anonymous_rooms.iter().map(String::as_str).collect();
        builder = builder
            .allow_anonymous(true)
            .anonymous_rooms(&rooms, &rooms);
    }
    // Without a list the hub accepts only pages it served itself (and clients that send no
    // Origin, which browsers always do).
    for origin in &auth.allow_origins {
        builder = builder.allow_origin(origin.clone());
    }
    if let Some(path) = &auth.revoked {
        builder = builder.revocation_file(path);
    }
    if let Some(secret) = &auth.admin_secret {
        builder = builder.admin_secret(secret);
    }
    let secs = std::time::Duration::from_secs;
    builder = builder
        .max_message_size(limits.max_message_size)
        .rate_limit(limits.rate_limit, limits.rate_limit.saturating_mul(2))
        .max_connections(limits.max_connections)
        .max_rooms_per_client(limits.max_rooms_per_client)
        .header_read_timeout(secs(limits.header_read_timeout))
        .upgrade_timeout(secs(limits.upgrade_timeout))
        .max_pending_upgrades(limits.max_pending_upgrades)
        .close_timeout(secs(limits.close_timeout))
        .compression(limits.compression)
        .history_len(history.len)
        .history_budget(history.budget);
    if let Some(url) = &engine.redis {
        builder = builder.redis(url.clone());
    }
    if let Some(id) = &engine.node_id {
        builder = builder.node_id(id.clone());
    }
    let hub = builder.build().context("hub settings rejected")?;
    let tls = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let read = |path: &std::path::PathBuf| {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            };
            Some(resocket_hub::server_config_from_pem(
                &read(cert)?,
                &read(key)?,
            )?)
        }
        (None, None) => None,
        // clap's `requires` pairs the flags; a config file can still name only one of them.
        _ => anyhow::bail!("tls.cert and tls.key go together: set both or neither"),
    };
    let listener = tokio::net::TcpListener::bind(listen.address)
        .await
        .with_context(|| format!("cannot listen on {}", listen.address))?;
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
