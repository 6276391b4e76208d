//! The HTTP side: routes, the upgrade checks (origin, token, connection cap), health, metrics
//! and the embedded dashboard.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use resocket::hub::protocol::SUBPROTOCOL;
use resocket_proto::deflate::Negotiated;
use resocket_proto::upgrade::Accepted;
use resocket_proto::WsStream;

use crate::config::HubConfig;
use crate::config::OriginPolicy;
use crate::connection::{self, Auth, Identity};
use crate::error::TokenError;
use crate::hub::{Hub, Shared};
use crate::metrics::Rejection;
use crate::token::Claims;

const INDEX_HTML: &str = include_str!("../dashboard/index.html");
const APP_JS: &str = include_str!("../dashboard/app.js");

/// The dashboard page with its script inlined, so that it works wherever the router is mounted
/// (a relative `app.js` from `/hub` would resolve to `/app.js`). Built once.
fn index_html() -> &'static str {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PAGE.get_or_init(|| {
        let script = format!("<script>\n{APP_JS}</script>");
        INDEX_HTML.replace(r#"<script src="app.js"></script>"#, &script)
    })
}

pub(crate) fn router(hub: Hub) -> Router {
    Router::new()
        .route("/ws", get(ws))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    index_html(),
                )
            }),
        )
        .route(
            "/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    APP_JS,
                )
            }),
        )
        .with_state(hub.shared)
}

/// Query parameters of `/ws`.
#[derive(Debug, serde::Deserialize)]
struct WsQuery {
    token: Option<String>,
}

impl Shared {
    /// Verifies a token and checks the deny-list.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let verifier = self.verifier.as_ref().ok_or(TokenError::Signature)?;
        let claims = verifier.verify(token)?;
        if self.is_revoked(&claims.sub, claims.jti.as_deref()) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        if self.config.origins == OriginPolicy::Any {
            return true;
        }
        // Browsers send origins in ASCII (RFC 6454 serializes hosts as punycode). An origin
        // that is not ASCII matches nothing allowed; taking it for absent would let it in.
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        let same_host = host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host));
        match &self.config.origins {
            OriginPolicy::Any => true,
            OriginPolicy::SameHost => same_host,
            OriginPolicy::List(list) => {
                same_host || list.iter().any(|o| o.eq_ignore_ascii_case(origin))
            }
        }
    }
}

/// `GET /ws`: the upgrade. The request must be a WebSocket upgrade; then the hub's own checks
/// (shutdown, origin, token) answer with an HTTP status before any `101`. The `101` is written
/// here (accept key, subprotocol, permessage-deflate on the hub's terms) and the socket, once
/// hyper hands it over, runs on the codec in the server role.
async fn ws(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<WsQuery>,
    mut request: Request,
) -> Response {
    let deflate = shared.config.compression.then(crate::wire::deflate_config);
    let accepted = match resocket_proto::upgrade::accept(
        request.method(),
        request.headers(),
        &[SUBPROTOCOL],
        deflate.as_ref(),
    ) {
        Ok(accepted) => accepted,
        Err(refused) => {
            let status = refused.status();
            let (parts, ()) = refused.response().into_parts();
            return (parts, status.canonical_reason().unwrap_or_default()).into_response();
        }
    };
    // Present under hyper with upgrades on (the hub's own server, `axum::serve`); absent when
    // the router is driven without a connection (a test calling it as a service).
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return (
            StatusCode::UPGRADE_REQUIRED,
            "connection cannot be upgraded",
        )
            .into_response();
    };
    let headers = request.headers();
    if shared.is_shutting_down() {
        shared.metrics.reject(Rejection::ShuttingDown);
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if !shared.origin_allowed(headers) {
        shared.metrics.reject(Rejection::Origin);
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let auth = match bearer.or(query.token.as_deref()) {
        Some(token) => match shared.verify(token) {
            Ok(claims) => Auth::FromRequest(Identity::Token(Box::new(claims))),
            Err(e) => {
                shared
                    .metrics
                    .auth_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                shared.metrics.reject(Rejection::Auth);
                return (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
            }
        },
        None if shared.config.allow_anonymous => {
            Auth::FromRequest(Identity::Anonymous { client: None })
        }
        None => Auth::Pending,
    };
    let response = switching_protocols(&accepted);
    // The codec's settings are made after the upgrade from these: held across the wait, a
    // whole `Config` would stay in every connection's task for its life.
    let compression = accepted.compression();
    let Some((id, outbox)) = shared.register() else {
        shared.metrics.reject(Rejection::Capacity);
        // Upgrade first so the client gets a close code it can act on (retry later), instead
        // of an HTTP status that many WebSocket clients report only as "handshake failed".
        let timeout = shared.config.close_timeout;
        let config = codec_config(&shared.config, compression);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let ws = Box::new(WsStream::new(TokioIo::new(upgraded), &[], config));
                connection::refuse(ws, timeout).await;
            }
        });
        return response;
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                // hyper keeps any bytes read past the request inside `Upgraded`.
                let config = codec_config(&shared.config, compression);
                let ws = Box::new(WsStream::new(TokioIo::new(upgraded), &[], config));
                connection::run(shared, ws, id, outbox, auth).await;
            }
            // The upgrade failed: the connection never runs, so release its slot.
            Err(_) => shared.unregister(id),
        }
    });
    response
}

/// The `101 Switching Protocols` as axum's response.
fn switching_protocols(accepted: &Accepted) -> Response {
    let (parts, ()) = accepted.response().into_parts();
    Response::from_parts(parts, Body::empty())
}

/// The codec's settings for one connection: the hub's limits, and compression as agreed.
fn codec_config(cfg: &HubConfig, compression: Option<Negotiated>) -> resocket_proto::Config {
    resocket_proto::Config {
        max_message_size: Some(cfg.max_message_size),
        max_frame_size: Some(cfg.max_message_size),
        read_buffer_size: cfg.read_buffer_size,
        write_buffer_size: cfg.write_buffer_size,
        compression,
        // Idle connections dominate the hub's memory: they hold no read buffer.
        release_idle_buffer: true,
        ..resocket_proto::Config::server()
    }
}

/// Query parameters of `/healthz`.
#[derive(Debug, serde::Deserialize)]
struct HealthQuery {
    deep: Option<String>,
}

async fn healthz(State(shared): State<Arc<Shared>>, Query(q): Query<HealthQuery>) -> Response {
    if shared.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if q.deep.as_deref().is_some_and(|d| d != "0") {
        return match crate::health::deep(&shared).await {
            Ok(what) => format!("{what}\n").into_response(),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
        };
    }
    "ok\n".into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared
        .metrics
        .render(shared.room_count(), &shared.node_id());
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}
