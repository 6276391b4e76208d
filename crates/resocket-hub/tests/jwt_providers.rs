//! Tokens from an identity provider: minted by PyJWT (an implementation independent of the
//! hub's), signed with HS256, RS256, ES256 and EdDSA, checked against PEM public keys or a JWKS
//! file, with `iss`, `aud`, `nbf` and `exp` rules. Needs `scripts/deps/pyjwt.sh`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{closed, guard, recv, send, subscribe, TestHub, SECRET};
use resocket_hub::{Hub, JwtAlgorithm};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite;

const ISSUER: &str = "https://idp.example.test/";
const AUDIENCE: &str = "resocket-hub";

/// A directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "resocket-hub-jwt-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims an identity provider would issue for the test hub: `sub`, `exp` an hour away, the
/// hub's issuer and audience, and the rooms.
fn claims(sub: &str) -> Value {
    json!({
        "sub": sub,
        "exp": now() + 3600,
        "iat": now(),
        "iss": ISSUER,
        "aud": [AUDIENCE, "another-service"],
        "sub_rooms": ["feed.*"],
        "pub_rooms": ["feed.*"],
    })
}

/// Runs `tests/pyjwt/mint.py` on `job` (with `"dir"` set to `dir`) and returns the tokens; the
/// keys it generated are in `dir`.
async fn mint(dir: &Path, mut job: Value) -> Vec<String> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let deps = manifest.join("../../.deps/python");
    assert!(
        deps.join("jwt").is_dir() && deps.join("cryptography").is_dir(),
        "PyJWT not found in {}: run scripts/deps/pyjwt.sh",
        deps.display()
    );
    job["dir"] = json!(dir);
    let mut child = tokio::process::Command::new("python3")
        .arg(manifest.join("tests/pyjwt/mint.py"))
        .env("PYTHONPATH", &deps)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, job.to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "mint.py failed: {:?}", out.status);
    let reply: Value = serde_json::from_slice(&out.stdout).expect("mint.py prints JSON");
    reply["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// A token job: `alg` with the key named `key` (its `kid` in the header), or with the test
/// secret for HS256.
fn token(alg: &str, key: &str, claims: Value) -> Value {
    if alg == "HS256" {
        json!({"alg": alg, "secret": key, "claims": claims})
    } else {
        json!({"alg": alg, "key": key, "kid": key, "claims": claims})
    }
}

/// The status and body of a refused upgrade.
async fn refusal(hub: &TestHub, token: &str) -> (u16, String) {
    match hub
        .raw(&[("authorization", &format!("Bearer {token}"))])
        .await
    {
        Err(tungstenite::Error::Http(resp)) => (
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
        Ok(_) => panic!("the token was accepted"),
    }
}

/// The JWKS document of the keys `names`, from the JWK files `mint` wrote.
fn jwks(dir: &TempDir, names: &[&str]) -> String {
    let keys: Vec<Value> = names
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.file(&format!("{n}.jwk.json"))).unwrap();
            serde_json::from_str(&text).unwrap()
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

/// Upgrades with `token` and subscribes to `feed.a`, which its rooms allow.
async fn accepted(hub: &TestHub, token: &str) {
    let mut ws = hub.raw_with_token(token).await;
    subscribe(&mut ws, "feed.a", None).await;
}

#[tokio::test]
async fn pyjwt_tokens_of_every_algorithm_are_accepted() {
    guard(60, async {
        let dir = TempDir::new();
        let tokens = mint(
            &dir.0,
            json!({
                "keys": [
                    {"name": "rsa", "alg": "RS256"},
                    {"name": "ec", "alg": "ES256"},
                    {"name": "ed", "alg": "EdDSA"},
                ],
                "tokens": [
                    token("HS256", SECRET, claims("hs")),
                    token("RS256", "rsa", claims("rs")),
                    token("ES256", "ec", claims("es")),
                    token("EdDSA", "ed", claims("ed")),
                ],
            }),
        )
        .await;
        let hub = TestHub::start(
            Hub::builder()
                .jwt_secret(SECRET)
                .jwt_public_key(dir.file("rsa.pub.pem"))
                .jwt_public_key(dir.file("ec.pub.pem"))
                .jwt_public_key(dir.file("ed.pub.pem"))
                .jwt_issuer(ISSUER)
                .jwt_audience(AUDIENCE),
        )
        .await;
        for t in &tokens {
            accepted(&hub, t).await;
        }
        // The permissions are the token's: a room outside `sub_rooms` is refused.
        let mut ws = hub.raw_with_token(&tokens[1]).await;
        send(&mut ws, json!({"type": "subscribe", "room": "other"})).await;
        assert_eq!(recv(&mut ws).await["code"], "forbidden");

        // The same keys from a JWKS file, found by the header's `kid`.
        let file = dir.file("jwks.json");
        std::fs::write(&file, jwks(&dir, &["rsa", "ec", "ed"])).unwrap();
        let hub = TestHub::start(
            Hub::builder()
                .jwks_file(&file)
                .jwt_issuer(ISSUER)
                .jwt_audience(AUDIENCE),
        )
        .await;
        for t in &tokens[1..] {
            accepted(&hub, t).await;
        }
        let (status, body) = refusal(&hub, &tokens[0]).await;
        assert_eq!((status, body.as_str()), (401, "no key for this token"));
    })
    .await;
}

#[tokio::test]
async fn a_wrong_key_issuer_audience_future_nbf_or_past_exp_gets_401() {
    guard(60, async {
        let dir = TempDir::new();
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = claims("mallory");
            f(&mut c);
            c
        };
        let cases = [
            (
                token("HS256", "another secret of at least 32 bytes", claims("m")),
                "bad token signature",
            ),
            (
                token("RS256", "rsa-other", claims("m")),
                "bad token signature",
            ),
            (
                token("ES256", "ec-other", claims("m")),
                "bad token signature",
            ),
            (
                token("EdDSA", "ed-other", claims("m")),
                "bad token signature",
            ),
            (
                token(
                    "RS256",
                    "rsa",
                    with(&|c| c["iss"] = json!("https://evil.test/")),
                ),
                "token issuer not accepted",
            ),
            (
                token(
                    "RS256",
                    "rsa",
                    with(&|c| {
                        c.as_object_mut().unwrap().remove("iss");
                    }),
                ),
                "token issuer not accepted",
            ),
            (
                token(
                    "ES256",
                    "ec",
                    with(&|c| c["aud"] = json!("another-service")),
                ),
                "token audience not accepted",
            ),
            (
                token(
                    "ES256",
                    "ec",
                    with(&|c| {
                        c.as_object_mut().unwrap().remove("aud");
                    }),
                ),
                "token audience not accepted",
            ),
            (
                token("EdDSA", "ed", with(&|c| c["nbf"] = json!(now() + 600))),
                "token not valid yet",
            ),
            (
                token("HS256", SECRET, with(&|c| c["exp"] = json!(now() - 600))),
                "token expired",
            ),
            (
                token("RS256", "rsa", with(&|c| c["exp"] = json!(now() - 600))),
                "token expired",
            ),
        ];
        let mut job = json!({
            "keys": [
                {"name": "rsa", "alg": "RS256"},
                {"name": "ec", "alg": "ES256"},
                {"name": "ed", "alg": "EdDSA"},
                {"name": "rsa-other", "alg": "RS256"},
                {"name": "ec-other", "alg": "ES256"},
                {"name": "ed-other", "alg": "EdDSA"},
            ],
            "tokens": cases.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
        });
        // A valid `nbf` within the leeway passes, so the check above is the rule, not the claim.
        job["tokens"].as_array_mut().unwrap().push(token(
            "EdDSA",
            "ed",
            with(&|c| c["nbf"] = json!(now() + 5)),
        ));
        let tokens = mint(&dir.0, job).await;
        let hub = TestHub::start(
            Hub::builder()
                .jwt_secret(SECRET)
                .jwt_public_key(dir.file("rsa.pub.pem"))
                .jwt_public_key(dir.file("ec.pub.pem"))
                .jwt_public_key(dir.file("ed.pub.pem"))
                .jwt_issuer(ISSUER)
                .jwt_audience(AUDIENCE)
                .token_leeway(Duration::from_secs(30)),
        )
        .await;
        for ((_, reason), t) in cases.iter().zip(&tokens) {
            let (status, body) = refusal(&hub, t).await;
            assert_eq!((status, body.as_str()), (401, *reason));
        }
        accepted(&hub, tokens.last().unwrap()).await;
    })
    .await;
}

#[tokio::test]
async fn an_algorithm_outside_the_accepted_list_gets_401() {
    guard(60, async {
        let dir = TempDir::new();
        let tokens = mint(
            &dir.0,
            json!({
                "keys": [{"name": "rsa", "alg": "RS256"}],
                "tokens": [
                    token("RS256", "rsa", claims("a")),
                    token("HS256", SECRET, claims("b")),
                ],
            }),
        )
        .await;
        let hub = TestHub::start(
            Hub::builder()
                .jwt_secret(SECRET)
                .jwt_public_key(dir.file("rsa.pub.pem"))
                .jwt_algorithms(&[JwtAlgorithm::RS256]),
        )
        .await;
        accepted(&hub, &tokens[0]).await;
        let (status, body) = refusal(&hub, &tokens[1]).await;
        assert_eq!(
            (status, body.as_str()),
            (401, "unsupported token algorithm")
        );
    })
    .await;
}

#[tokio::test]
async fn a_rotated_jwks_key_is_picked_up_without_a_restart() {
    guard(60, async {
        let dir = TempDir::new();
        let tokens = mint(
            &dir.0,
            json!({
                "keys": [
                    {"name": "old", "alg": "RS256"},
                    {"name": "new", "alg": "ES256"},
                ],
                "tokens": [
                    token("RS256", "old", claims("a")),
                    token("ES256", "new", claims("b")),
                ],
            }),
        )
        .await;
        let (old, new) = (&tokens[0], &tokens[1]);
        let file = dir.file("jwks.json");
        std::fs::write(&file, jwks(&dir, &["old"])).unwrap();
        let hub = TestHub::start(
            Hub::builder()
                .jwks_file(&file)
                .jwt_issuer(ISSUER)
                .jwt_audience(AUDIENCE),
        )
        .await;
        accepted(&hub, old).await;
        assert_eq!(refusal(&hub, new).await.0, 401);
        // A live connection's token stays valid through the rotation: only its `exp` and the
        // deny-list end it.
        let mut live = hub.raw_with_token(old).await;
        subscribe(&mut live, "feed.live", None).await;

        std::fs::write(&file, jwks(&dir, &["new"])).unwrap();
        // The file is polled about once a second: retry until the new key is in.
        loop {
            match hub
                .raw(&[("authorization", &format!("Bearer {new}"))])
                .await
            {
                Ok(mut ws) => {
                    subscribe(&mut ws, "feed.a", None).await;
                    break;
                }
                Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
                Err(other) => panic!("upgrade failed: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, body) = refusal(&hub, old).await;
        assert_eq!((status, body.as_str()), (401, "no key for this token"));
        subscribe(&mut live, "feed.b", None).await;
    })
    .await;
}

#[tokio::test]
async fn an_unusable_key_file_or_algorithm_list_is_refused_at_build() {
    guard(60, async {
        let dir = TempDir::new();
        mint(&dir.0, json!({"keys": [{"name": "rsa", "alg": "RS256"}]})).await;
        let missing = Hub::builder().jwks_file(dir.file("missing.json")).build();
        assert!(matches!(missing, Err(resocket_hub::Error::KeyFile { .. })));
        std::fs::write(dir.file("empty.json"), r#"{"keys":[]}"#).unwrap();
        let empty = Hub::builder().jwks_file(dir.file("empty.json")).build();
        assert!(matches!(empty, Err(resocket_hub::Error::KeyFile { .. })));
        std::fs::write(dir.file("not-a-key.pem"), "hello").unwrap();
        let pem = Hub::builder()
            .jwt_public_key(dir.file("not-a-key.pem"))
            .build();
        assert!(matches!(pem, Err(resocket_hub::Error::KeyFile { .. })));
        // RS256 only, with nothing but an HMAC secret: no token could ever verify.
        let unusable = Hub::builder()
            .jwt_secret(SECRET)
            .jwt_algorithms(&[JwtAlgorithm::RS256])
            .build();
        assert!(unusable.is_err_and(|e| e.is_config()));
        let fine = Hub::builder()
            .jwt_public_key(dir.file("rsa.pub.pem"))
            .jwt_algorithms(&["rs256".parse().unwrap()])
            .build();
        assert!(fine.is_ok());
    })
    .await;
}

#[tokio::test]
async fn deep_healthz_works_on_a_hub_that_trusts_only_a_jwks() {
    guard(60, async {
        let dir = TempDir::new();
        mint(&dir.0, json!({"keys": [{"name": "ed", "alg": "EdDSA"}]})).await;
        let file = dir.file("jwks.json");
        std::fs::write(&file, jwks(&dir, &["ed"])).unwrap();
        let hub = TestHub::start(
            Hub::builder()
                .jwks_file(&file)
                .jwt_issuer(ISSUER)
                .jwt_audience(AUDIENCE)
                .jwt_algorithms(&[JwtAlgorithm::EdDSA]),
        )
        .await;
        assert_eq!(
            common::http_get(hub.addr, "/healthz?deep=1").await,
            (200, "ok (websocket round trip)\n".to_string())
        );
    })
    .await;
}

#[tokio::test]
async fn provider_tokens_expire_refresh_and_revoke_on_live_connections() {
    guard(60, async {
        let dir = TempDir::new();
        // Expiring a few seconds after signing: enough for the set-up on a loaded machine.
        let soon = now() + 3;
        let later = now() + 3600;
        let with = |sub: &str, exp: u64, jti: &str| {
            let mut c = claims(sub);
            c["exp"] = json!(exp);
            c["jti"] = json!(jti);
            c
        };
        let tokens = mint(
            &dir.0,
            json!({
                "keys": [{"name": "rsa", "alg": "RS256"}],
                "tokens": [
                    token("RS256", "rsa", with("alice", soon, "a-1")),
                    token("RS256", "rsa", with("alice", later, "a-2")),
                    token("RS256", "rsa", with("bob", soon, "b-1")),
                    token("RS256", "rsa", with("carol", later, "c-1")),
                ],
            }),
        )
        .await;
        let file = dir.file("jwks.json");
        std::fs::write(&file, jwks(&dir, &["rsa"])).unwrap();
        let hub = TestHub::start(
            Hub::builder()
                .jwks_file(&file)
                .jwt_issuer(ISSUER)
                .jwt_audience(AUDIENCE),
        )
        .await;

        let mut alice = hub.raw_with_token(&tokens[0]).await;
        subscribe(&mut alice, "feed.a", None).await;
        send(&mut alice, json!({"type": "refresh", "token": tokens[1]})).await;
        assert_eq!(
            recv(&mut alice).await,
            json!({"type": "refreshed", "exp": later})
        );

        // Bob does not refresh: his connection ends at `exp`, while Alice's goes on.
        let mut bob = hub.raw_with_token(&tokens[2]).await;
        subscribe(&mut bob, "feed.b", None).await;
        assert_eq!(recv(&mut bob).await["code"], "token_expired");
        assert_eq!(closed(&mut bob).await.unwrap().code, 1008.into());
        subscribe(&mut alice, "feed.c", None).await;

        let mut carol = hub.raw_with_token(&tokens[3]).await;
        subscribe(&mut carol, "feed.a", None).await;
        hub.hub.revoke("jti:c-1");
        assert_eq!(recv(&mut carol).await["code"], "revoked");
        assert_eq!(closed(&mut carol).await.unwrap().code, 1008.into());
        assert_eq!(
            refusal(&hub, &tokens[3]).await,
            (401, "token revoked".into())
        );
    })
    .await;
}
