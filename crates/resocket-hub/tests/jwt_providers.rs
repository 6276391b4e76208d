//! Tokens from an identity provider: minted by PyJWT (an implementation independent of the
//! hub's), signed with HS256, RS256, ES256 and EdDSA, checked against PEM public keys or a JWKS
//! file, with `iss`, `aud`, `nbf` and `exp` rules. Needs `scripts/deps/pyjwt.sh`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{closed, guard, recv, send, subscribe, TestHub, SECRET};
use resocket_hub::{Hub, HubBuilder, JwtAlgorithm};
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

/// Runs `tests/pyjwt/mint.py`: generates the `(name, alg)` `keys` into `dir` and returns the
/// `tokens` (jobs from [`token`]) it signed.
async fn mint(dir: &TempDir, keys: &[(&str, &str)], tokens: Vec<Value>) -> Vec<String> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let deps = manifest.join("../../.deps/python");
    assert!(
        deps.join("jwt").is_dir() && deps.join("cryptography").is_dir(),
        "PyJWT not found in {}: run scripts/deps/pyjwt.sh",
        deps.display()
    );
    let keys: Vec<Value> = keys
        .iter()
        .map(|(name, alg)| json!({"name": name, "alg": alg}))
        .collect();
    let job = json!({"dir": dir.0, "keys": keys, "tokens": tokens});
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

/// Writes the JWKS of `names` to `jwks.json` in `dir`; a hub builder that trusts that file,
/// with the provider's issuer and audience.
fn trusting_jwks(dir: &TempDir, names: &[&str]) -> HubBuilder {
    let file = dir.file("jwks.json");
    std::fs::write(&file, jwks(dir, names)).unwrap();
    Hub::builder()
        .jwks_file(file)
        .jwt_issuer(ISSUER)
        .jwt_audience(AUDIENCE)
}

/// A hub builder that trusts the test secret and the PEM keys `rsa`, `ec` and `ed` in `dir`,
/// with the provider's issuer and audience.
fn trusting_every_algorithm(dir: &TempDir) -> HubBuilder {
    Hub::builder()
        .jwt_secret(SECRET)
        .jwt_public_key(dir.file("rsa.pub.pem"))
        .jwt_public_key(dir.file("ec.pub.pem"))
        .jwt_public_key(dir.file("ed.pub.pem"))
        .jwt_issuer(ISSUER)
        .jwt_audience(AUDIENCE)
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
        let keys = [("rsa", "RS256"), ("ec", "ES256"), ("ed", "EdDSA")];
        let tokens = vec![
            token("HS256", SECRET, claims("hs")),
            token("RS256", "rsa", claims("rs")),
            token("ES256", "ec", claims("es")),
            token("EdDSA", "ed", claims("ed")),
        ];
        let tokens = mint(&dir, &keys, tokens).await;
        let hub = TestHub::start(trusting_every_algorithm(&dir)).await;
        for t in &tokens {
            accepted(&hub, t).await;
        }
        // The permissions are the token's: a room outside `sub_rooms` is refused.
        let mut ws = hub.raw_with_token(&tokens[1]).await;
        send(&mut ws, json!({"type": "subscribe", "room": "other"})).await;
        assert_eq!(recv(&mut ws).await["code"], "forbidden");

        // The same keys from a JWKS file, found by the header's `kid`.
        let hub = TestHub::start(trusting_jwks(&dir, &["rsa", "ec", "ed"])).await;
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
        let set = |name: &str, value: Value| {
            let mut c = claims("mallory");
            c[name] = value;
            c
        };
        let without = |name: &str| {
            let mut c = claims("mallory");
            c.as_object_mut().unwrap().remove(name);
            c
        };
        let other_secret = "another secret of at least 32 bytes";
        let (past, future) = (json!(now() - 600), json!(now() + 600));
        let (evil, other_aud) = (json!("https://evil.test/"), json!("another-service"));
        let cases = [
            ("HS256", other_secret, claims("m"), "bad token signature"),
            ("RS256", "rsa-other", claims("m"), "bad token signature"),
            ("ES256", "ec-other", claims("m"), "bad token signature"),
            ("EdDSA", "ed-other", claims("m"), "bad token signature"),
            (
                "RS256",
                "rsa",
                set("iss", evil),
                "token issuer not accepted",
            ),
            ("RS256", "rsa", without("iss"), "token issuer not accepted"),
            (
                "ES256",
                "ec",
                set("aud", other_aud),
                "token audience not accepted",
            ),
            ("ES256", "ec", without("aud"), "token audience not accepted"),
            ("EdDSA", "ed", set("nbf", future), "token not valid yet"),
            ("HS256", SECRET, set("exp", past.clone()), "token expired"),
            ("RS256", "rsa", set("exp", past), "token expired"),
        ];
        let keys = [
            ("rsa", "RS256"),
            ("ec", "ES256"),
            ("ed", "EdDSA"),
            ("rsa-other", "RS256"),
            ("ec-other", "ES256"),
            ("ed-other", "EdDSA"),
        ];
        let mut jobs: Vec<Value> = cases
            .iter()
            .map(|(alg, key, claims, _)| token(alg, key, claims.clone()))
            .collect();
        // A valid `nbf` within the leeway passes, so the check above is the rule, not the claim.
        jobs.push(token("EdDSA", "ed", set("nbf", json!(now() + 5))));
        let tokens = mint(&dir, &keys, jobs).await;
        let builder = trusting_every_algorithm(&dir).token_leeway(Duration::from_secs(30));
        let hub = TestHub::start(builder).await;
        for ((.., reason), t) in cases.iter().zip(&tokens) {
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
        let jobs = vec![
            token("RS256", "rsa", claims("a")),
            token("HS256", SECRET, claims("b")),
        ];
        let tokens = mint(&dir, &[("rsa", "RS256")], jobs).await;
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
        let keys = [("old", "RS256"), ("new", "ES256")];
        let jobs = vec![
            token("RS256", "old", claims("a")),
            token("ES256", "new", claims("b")),
        ];
        let tokens = mint(&dir, &keys, jobs).await;
        let (old, new) = (&tokens[0], &tokens[1]);
        let hub = TestHub::start(trusting_jwks(&dir, &["old"])).await;
        accepted(&hub, old).await;
        assert_eq!(refusal(&hub, new).await.0, 401);
        // A live connection's token stays valid through the rotation: only its `exp` and the
        // deny-list end it.
        let mut live = hub.raw_with_token(old).await;
        subscribe(&mut live, "feed.live", None).await;

        std::fs::write(dir.file("jwks.json"), jwks(&dir, &["new"])).unwrap();
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
        mint(&dir, &[("rsa", "RS256")], vec![]).await;
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
        mint(&dir, &[("ed", "EdDSA")], vec![]).await;
        let builder = trusting_jwks(&dir, &["ed"]).jwt_algorithms(&[JwtAlgorithm::EdDSA]);
        let hub = TestHub::start(builder).await;
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
        let jobs = [
            ("alice", soon, "a-1"),
            ("alice", later, "a-2"),
            ("bob", soon, "b-1"),
            ("carol", later, "c-1"),
        ]
        .map(|(sub, exp, jti)| token("RS256", "rsa", with(sub, exp, jti)));
        let tokens = mint(&dir, &[("rsa", "RS256")], jobs.to_vec()).await;
        let hub = TestHub::start(trusting_jwks(&dir, &["rsa"])).await;

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
