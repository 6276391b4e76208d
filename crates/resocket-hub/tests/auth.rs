//! Tokens (header, query, first frame), room permissions, revocation and the Origin allow-list.

mod common;

use std::time::Duration;

use common::{closed, expect_error, guard, recv, rooms_token, send, subscribe, TestHub, SECRET};
use resocket_hub::{Hub, Token};
use serde_json::json;
use tokio_tungstenite::tungstenite;

fn status_of(err: tungstenite::Error) -> u16 {
    match err {
        tungstenite::Error::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_expired_token_is_refused_in_header_query_and_first_frame() {
    guard(10, async {
        let hub = TestHub::with_tokens().await;
        let expired = Token::new("old")
            .subscribe("*")
            .expires_at(1_000)
            .sign(SECRET.as_bytes());
        let err = hub
            .raw(&[("authorization", &format!("Bearer {expired}"))])
            .await
            .unwrap_err();
        assert_eq!(status_of(err), 401);
        let err = common::raw_connect(&format!("{}?token={expired}", hub.url()), &[])
            .await
            .unwrap_err();
        assert_eq!(status_of(err), 401);

        let mut ws = hub
            .raw(&[])
            .await
            .expect("no token yet: upgrade, then auth frame");
        send(&mut ws, json!({"type": "auth", "token": expired})).await;
        let err = recv(&mut ws).await;
        assert_eq!(
            (err["type"].as_str(), err["code"].as_str()),
            (Some("error"), Some("unauthorized"))
        );
        assert_eq!(closed(&mut ws).await.unwrap().code, 1008.into());

        assert_eq!(hub.metric("resocket_hub_auth_failures_total").await, 3.0);
    })
    .await;
}

#[tokio::test]
async fn a_valid_token_works_in_every_place() {
    guard(10, async {
        let hub = TestHub::with_tokens().await;
        let token = Token::new("u").subscribe("*").sign(SECRET.as_bytes());
        let mut ws = hub.raw_with_token(&token).await;
        subscribe(&mut ws, "a", None).await;
        let mut ws = common::raw_connect(&format!("{}?token={token}", hub.url()), &[])
            .await
            .unwrap();
        subscribe(&mut ws, "a", None).await;
        let mut ws = hub.raw(&[]).await.unwrap();
        send(&mut ws, json!({"type": "auth", "token": token})).await;
        subscribe(&mut ws, "a", None).await;
    })
    .await;
}

#[tokio::test]
async fn without_anonymous_access_the_first_frame_must_authenticate() {
    guard(10, async {
        let hub = TestHub::with_tokens().await;
        let mut ws = hub.raw(&[]).await.unwrap();
        send(&mut ws, json!({"type": "subscribe", "room": "a"})).await;
        assert_eq!(recv(&mut ws).await["code"], "unauthorized");
        assert_eq!(closed(&mut ws).await.unwrap().code, 1008.into());

        let hub = TestHub::start(
            Hub::builder()
                .jwt_secret(SECRET)
                .auth_timeout(Duration::from_millis(200)),
        )
        .await;
        let mut ws = hub.raw(&[]).await.unwrap();
        assert_eq!(recv(&mut ws).await["code"], "unauthorized");
        assert_eq!(
            closed(&mut ws).await.unwrap().code,
            1008.into(),
            "auth timeout"
        );
    })
    .await;
}

#[tokio::test]
async fn subscribing_needs_the_rooms_subscribe_permission() {
    guard(10, async {
        let hub = TestHub::with_tokens().await;
        let token = rooms_token("u", "news.*", "*");
        let mut ws = hub.raw_with_token(&token).await;
        send(&mut ws, json!({"type": "subscribe", "room": "chat"})).await;
        expect_error(&mut ws, "forbidden", "chat").await;
        // The connection stays usable, and the publish permission does not imply subscribe.
        subscribe(&mut ws, "news.sport", None).await;
    })
    .await;
}

#[tokio::test]
async fn publishing_needs_the_rooms_publish_permission() {
    guard(10, async {
        let hub = TestHub::with_tokens().await;
        let token = rooms_token("u", "*", "news.*");
        let mut ws = hub.raw_with_token(&token).await;
        subscribe(&mut ws, "chat", None).await;
        send(
            &mut ws,
            json!({"type": "publish", "room": "chat", "id": "p1", "data": 1}),
        )
        .await;
        expect_error(&mut ws, "forbidden", "p1").await;
        assert_eq!(common::publish(&mut ws, "news.x", "p2", json!(2)).await, 1);
        // Nobody publishes to system rooms.
        let admin = common::token("admin");
        let mut ws = hub.raw_with_token(&admin).await;
        send(
            &mut ws,
            json!({"type": "publish", "room": "$stats", "id": "x", "data": 1}),
        )
        .await;
        assert_eq!(recv(&mut ws).await["code"], "forbidden");
    })
    .await;
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    guard(10, async {
        let hub = TestHub::start(Hub::builder().jwt_secret(SECRET).revoke("stolen")).await;
        let token = Token::new("u")
            .jti("stolen")
            .subscribe("*")
            .sign(SECRET.as_bytes());
        let err = hub
            .raw(&[("authorization", &format!("Bearer {token}"))])
            .await
            .unwrap_err();
        assert_eq!(status_of(err), 401);
    })
    .await;
}

#[tokio::test]
async fn a_foreign_origin_is_refused() {
    guard(10, async {
        let hub = TestHub::allowing_origin("https://app.example").await;
        let err = hub
            .raw(&[("origin", "https://evil.example")])
            .await
            .unwrap_err();
        assert_eq!(status_of(err), 403);
        hub.raw(&[("origin", "https://app.example")])
            .await
            .expect("listed origin");
        let own = format!("http://{}", hub.addr);
        hub.raw(&[("origin", &own)])
            .await
            .expect("the hub's own pages");
        hub.raw(&[]).await.expect("no origin: not a browser");

        let strict = TestHub::anonymous().await;
        let err = strict
            .raw(&[("origin", "https://app.example")])
            .await
            .unwrap_err();
        assert_eq!(
            status_of(err),
            403,
            "the default allows only the hub's own host"
        );
        assert_eq!(
            strict
                .metric("resocket_hub_rejected_upgrades_total{reason=\"origin\"}")
                .await,
            1.0
        );
    })
    .await;
}

#[tokio::test]
async fn a_non_ascii_origin_is_refused_with_403() {
    guard(10, async {
        use tungstenite::client::IntoClientRequest;
        use tungstenite::http::HeaderValue;
        let hub = TestHub::allowing_origin("https://app.example").await;
        let mut req = hub.url().into_client_request().unwrap();
        req.headers_mut().insert(
            "origin",
            HeaderValue::from_bytes("https://évil.example".as_bytes()).unwrap(),
        );
        let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
        assert_eq!(status_of(err), 403);
    })
    .await;
}

#[tokio::test]
async fn revoking_while_serving_closes_the_tokens_connections() {
    guard(10, async {
        let hub = TestHub::with_tokens().await;
        let stolen = Token::new("mallory")
            .jti("t-9")
            .subscribe("*")
            .sign(SECRET.as_bytes());
        let other = Token::new("alice").subscribe("*").sign(SECRET.as_bytes());
        let mut by_header = hub.raw_with_token(&stolen).await;
        subscribe(&mut by_header, "a", None).await;
        let mut by_frame = hub.raw(&[]).await.unwrap();
        send(&mut by_frame, json!({"type": "auth", "token": stolen})).await;
        subscribe(&mut by_frame, "a", None).await;
        let mut innocent = hub.raw_with_token(&other).await;
        subscribe(&mut innocent, "a", None).await;

        hub.hub.revoke("t-9");
        for ws in [&mut by_header, &mut by_frame] {
            assert_eq!(recv(ws).await["code"], "revoked");
            assert_eq!(closed(ws).await.unwrap().code, 1008.into());
        }
        let err = hub
            .raw(&[("authorization", &format!("Bearer {stolen}"))])
            .await
            .unwrap_err();
        assert_eq!(status_of(err), 401);
        // Others are untouched, and a reload that drops the entry lets the token in again.
        subscribe(&mut innocent, "b", None).await;
        hub.hub.set_revoked(Vec::new());
        hub.raw_with_token(&stolen).await;
    })
    .await;
}

/// A path for one test's file, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "resocket-hub-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn write(&self, contents: &str) {
        std::fs::write(&self.0, contents).unwrap();
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn a_token_named_in_the_revocation_file_loses_its_live_connection() {
    guard(20, async {
        let file = TempFile::new("revoked", "# revoked tokens\njti:old\n");
        let hub = TestHub::start(Hub::builder().jwt_secret(SECRET).revocation_file(&file.0)).await;
        let token = |sub: &str, jti: &str| {
            Token::new(sub)
                .jti(jti)
                .subscribe("*")
                .sign(SECRET.as_bytes())
        };
        // The file is in force from the start.
        let old = token("u", "old");
        let err = hub
            .raw(&[("authorization", &format!("Bearer {old}"))])
            .await
            .unwrap_err();
        assert_eq!(status_of(err), 401);

        let mut stolen = hub.raw_with_token(&token("mallory", "t-9")).await;
        subscribe(&mut stolen, "a", None).await;
        let mut innocent = hub.raw_with_token(&token("alice", "t-1")).await;
        subscribe(&mut innocent, "a", None).await;
        file.write("# revoked tokens\njti:old\njti:t-9\n");
        assert_eq!(recv(&mut stolen).await["code"], "revoked");
        assert_eq!(closed(&mut stolen).await.unwrap().code, 1008.into());
        subscribe(&mut innocent, "b", None).await;

        // A subject line revokes every token of that subject; dropped lines are lifted.
        file.write("sub:alice\n");
        assert_eq!(recv(&mut innocent).await["code"], "revoked");
        assert_eq!(closed(&mut innocent).await.unwrap().code, 1008.into());
        hub.raw_with_token(&old).await;
    })
    .await;
}

#[tokio::test]
async fn the_admin_endpoint_revokes_a_live_token_and_needs_its_own_secret() {
    guard(10, async {
        let admin = "the admin secret, not the jwt one";
        let hub = TestHub::start(Hub::builder().jwt_secret(SECRET).admin_secret(admin)).await;
        let stolen = Token::new("mallory")
            .jti("t-9")
            .subscribe("*")
            .sign(SECRET.as_bytes());
        let mut ws = hub.raw_with_token(&stolen).await;
        subscribe(&mut ws, "a", None).await;

        for wrong in [None, Some(SECRET), Some(stolen.as_str())] {
            let (status, _) = common::http_post(hub.addr, "/admin/revoke", wrong, "jti:t-9").await;
            assert_eq!(status, 401, "with {wrong:?}");
        }
        subscribe(&mut ws, "b", None).await;
        let (status, body) =
            common::http_post(hub.addr, "/admin/revoke", Some(admin), "jti:t-9\n").await;
        assert_eq!((status, body.as_str()), (200, "revoked 1\n"));
        assert_eq!(recv(&mut ws).await["code"], "revoked");
        assert_eq!(closed(&mut ws).await.unwrap().code, 1008.into());
    })
    .await;
}

#[tokio::test]
async fn without_an_admin_secret_there_is_no_admin_endpoint() {
    guard(10, async {
        let hub = TestHub::with_tokens().await;
        let (status, _) = common::http_post(hub.addr, "/admin/revoke", Some(SECRET), "x").await;
        assert_eq!(status, 404);
    })
    .await;
}
