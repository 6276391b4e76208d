//! JSON Web Tokens: the claims the hub reads, HS256 signing for tests and the CLI, and
//! verification (HMAC, RSA, ECDSA and EdDSA, through `jsonwebtoken`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use std::sync::{Arc, RwLock};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::config::HubConfig;
use crate::error::{Error, TokenError};
use crate::glob;
use crate::keys::{self, JwtSettings, Key};

/// The claims of a hub token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The subject: the client id, used as the publish dedupe key.
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// The token id, which the deny-list can revoke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Room patterns this token may subscribe to (`*` is a wildcard).
    #[serde(default)]
    pub sub_rooms: Vec<String>,
    /// Room patterns this token may publish to (`*` is a wildcard).
    #[serde(default)]
    pub pub_rooms: Vec<String>,
}

impl Claims {
    /// Whether these claims allow subscribing to `room`.
    pub fn may_subscribe(&self, room: &str) -> bool {
        glob::any_matches(&self.sub_rooms, room)
    }

    /// Whether these claims allow publishing to `room`.
    pub fn may_publish(&self, room: &str) -> bool {
        glob::any_matches(&self.pub_rooms, room)
    }
}

/// Builds and signs a token, for tests, the CLI and anyone issuing tokens for a hub.
#[derive(Debug, Clone)]
pub struct Token {
    claims: Claims,
}

impl Token {
    /// Starts a token for `sub`, valid for one hour, with no room permissions.
    pub fn new(sub: impl Into<String>) -> Self {
        Token {
            claims: Claims {
                sub: sub.into(),
                exp: now_secs() + 3600,
                jti: None,
                sub_rooms: Vec::new(),
                pub_rooms: Vec::new(),
            },
        }
    }

    /// Sets the expiry to `ttl` from now.
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.claims.exp = now_secs() + ttl.as_secs();
        self
    }

    /// Sets the expiry in seconds since the Unix epoch (a past value makes an expired token).
    pub fn expires_at(mut self, exp: u64) -> Self {
        self.claims.exp = exp;
        self
    }

    /// Sets the token id.
    pub fn jti(mut self, jti: impl Into<String>) -> Self {
        self.claims.jti = Some(jti.into());
        self
    }

    /// Adds a room pattern this token may subscribe to.
    pub fn subscribe(mut self, pattern: impl Into<String>) -> Self {
        self.claims.sub_rooms.push(pattern.into());
        self
    }

    /// Adds a room pattern this token may publish to.
    pub fn publish(mut self, pattern: impl Into<String>) -> Self {
        self.claims.pub_rooms.push(pattern.into());
        self
    }

    /// The claims so far.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// Signs the claims with HS256 and returns the compact JWT.
    pub fn sign(&self, secret: &[u8]) -> String {
        sign(&self.claims, secret)
    }
}

/// Signs `claims` with HS256 under `secret` and returns the compact JWT.
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    sign_with_header(claims, secret, r#"{"alg":"HS256","typ":"JWT"}"#)
}

fn sign_with_header(claims: &Claims, secret: &[u8], header: &str) -> String {
    // Serializing plain strings and numbers cannot fail.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let mut out = URL_SAFE_NO_PAD.encode(header);
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, out.as_bytes());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    out
}

/// The `kid` of the hub's own tokens, which its deep health check presents.
const INTERNAL_KID: &str = "resocket-hub-internal";

/// The hub's own signing key and the rules for its own tokens (HS256, no `iss` or `aud`).
struct Internal {
    secret: [u8; 32],
    key: Key,
    validation: Validation,
}

impl Internal {
    fn new() -> Option<Internal> {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret).ok()?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        Some(Internal {
            key: Key {
                kid: Some(INTERNAL_KID.to_string()),
                alg: Some(Algorithm::HS256),
                key: DecodingKey::from_secret(&secret).ok()?,
            },
            secret,
            validation,
        })
    }
}

/// Verifies a JWT against the hub's keys, its claim rules and the clock.
pub(crate) struct Verifier {
    /// A random secret made for this process, for the hub's own tokens: a hub that trusts only
    /// an identity provider's keys can still prove a round trip on `/healthz?deep=1`. It never
    /// leaves the process, so it widens nothing an outsider can sign. `None` when the system
    /// had no randomness to make it: the hub then has no tokens of its own.
    internal: Option<Internal>,
    /// The HS256 secret and the keys from PEM files: fixed for the hub's life.
    fixed: Vec<Key>,
    /// The JWKS file's keys, replaced whole on every reload. Read on connect, `auth` and
    /// `refresh`, never per message; a reload holds the write lock only for the swap.
    jwks: RwLock<Arc<[Key]>>,
    /// The header `alg`s accepted.
    algorithms: Vec<Algorithm>,
    /// `iss`, `aud` and `nbf` rules; `algorithms` is set per token to its own `alg`.
    validation: Validation,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    leeway: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Verifier")
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for the given keys and rules.
    pub(crate) fn new(
        fixed: Vec<Key>,
        jwks: Vec<Key>,
        settings: &JwtSettings,
        leeway: Duration,
    ) -> Self {
        let algorithms = settings.algorithms();
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is checked here with the rule that live connections are held to
        // (`expiry_deadline`), so both agree to the second.
        validation.validate_exp = false;
        validation.validate_nbf = true;
        validation.leeway = leeway.as_secs();
        let mut required = vec!["exp", "sub"];
        if !settings.issuers.is_empty() {
            validation.set_issuer(&settings.issuers);
            required.push("iss");
        }
        if settings.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&settings.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let internal = Internal::new();
        if internal.is_none() {
            tracing::warn!("no system randomness: the deep health check cannot authenticate");
        }
        Verifier {
            internal,
            fixed,
            jwks: RwLock::new(jwks.into()),
            algorithms,
            validation,
            leeway: leeway.as_secs(),
        }
    }

    /// The verifier a hub's settings ask for, with its key files read; `None` when the hub
    /// takes no tokens at all.
    ///
    /// # Errors
    ///
    /// [`Error::KeyFile`] for a key or JWKS file that cannot be used.
    pub(crate) fn from_config(config: &HubConfig) -> Result<Option<Verifier>, Error> {
        if config.jwt_secret.is_none() && !config.jwt.has_keys() {
            return Ok(None);
        }
        let mut fixed = Vec::new();
        if let Some(secret) = &config.jwt_secret {
            // Checked non-empty by the builder; the crate refuses empty HMAC keys.
            let key = DecodingKey::from_secret(secret).map_err(|_| Error::Config {
                setting: "jwt_secret",
                reason: "use at least 16 bytes",
            })?;
            fixed.push(Key::plain(key));
        }
        for path in &config.jwt.public_keys {
            fixed.push(keys::load_pem(path)?);
        }
        let jwks = match &config.jwt.jwks_file {
            Some(path) => keys::load_jwks(path)?,
            None => Vec::new(),
        };
        Ok(Some(Verifier::new(
            fixed,
            jwks,
            &config.jwt,
            config.token_leeway,
        )))
    }

    /// A token for the hub's own client (the deep health check), which this verifier accepts
    /// whatever keys and rules it was given; `None` without system randomness.
    pub(crate) fn internal_token(&self, token: &Token) -> Option<String> {
        let internal = self.internal.as_ref()?;
        let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{INTERNAL_KID}"}}"#);
        Some(sign_with_header(&token.claims, &internal.secret, &header))
    }

    /// Replaces the JWKS file's keys.
    pub(crate) fn set_jwks(&self, keys: Vec<Key>) {
        *self.jwks.write().unwrap_or_else(|e| e.into_inner()) = keys.into();
    }

    /// Whether any key at all can verify one of the accepted algorithms.
    pub(crate) fn can_verify_any(&self) -> bool {
        let jwks = self.jwks();
        self.algorithms.iter().any(|&alg| {
            self.fixed
                .iter()
                .chain(jwks.iter())
                .any(|k| k.fits(alg, None))
        })
    }

    fn jwks(&self) -> Arc<[Key]> {
        self.jwks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Checks the header's `alg`, then the signature with each key that fits the header's
    /// `alg` and `kid`, then the claims, and returns them.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.kid.as_deref() == Some(INTERNAL_KID) {
            return self
                .internal
                .as_ref()
                .and_then(|i| self.check(token, &i.key, &i.validation))
                .unwrap_or(Err(TokenError::Signature));
        }
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let jwks = self.jwks();
        let mut tried = false;
        for key in self
            .fixed
            .iter()
            .chain(jwks.iter())
            .filter(|k| k.fits(header.alg, header.kid.as_deref()))
        {
            tried = true;
            // Another key with the same `kid` (or none) may still fit: a JWKS in rotation
            // lists the old and the new key.
            if let Some(verdict) = self.check(token, key, &validation) {
                return verdict;
            }
        }
        Err(if tried {
            TokenError::Signature
        } else {
            TokenError::UnknownKey
        })
    }

    /// Checks `token` with one key: `None` when this key's signature does not match.
    fn check(
        &self,
        token: &str,
        key: &Key,
        validation: &Validation,
    ) -> Option<Result<Claims, TokenError>> {
        match jsonwebtoken::decode::<Claims>(token, &key.key, validation) {
            Ok(data) if data.claims.exp.saturating_add(self.leeway) <= now_secs() => {
                Some(Err(TokenError::Expired))
            }
            Ok(data) => Some(Ok(data.claims)),
            Err(e) => refusal(e.kind()).map(Err),
        }
    }
}

/// What a failed `decode` means: `None` when this key's signature check failed (another key
/// may fit), or why the token itself is refused.
fn refusal(kind: &ErrorKind) -> Option<TokenError> {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm => None,
        ErrorKind::ExpiredSignature => Some(TokenError::Expired),
        ErrorKind::ImmatureSignature => Some(TokenError::NotYetValid),
        ErrorKind::InvalidIssuer => Some(TokenError::Issuer),
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => Some(TokenError::Issuer),
        ErrorKind::InvalidAudience => Some(TokenError::Audience),
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => Some(TokenError::Audience),
        _ => Some(TokenError::Malformed),
    }
}

/// The moment, on tokio's clock, at which a token with this `exp` stops being valid: the same
/// rule as [`Verifier::verify`] (`exp + leeway` seconds since the Unix epoch), so a live
/// connection loses its token exactly when a new connection would be refused it.
pub(crate) fn expiry_deadline(exp: u64, leeway: Duration) -> tokio::time::Instant {
    let end = UNIX_EPOCH + Duration::from_secs(exp.saturating_add(leeway.as_secs()));
    let left = end
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    let now = tokio::time::Instant::now();
    // An `exp` centuries away does not fit an `Instant`; a decade is "never" for a connection.
    now.checked_add(left)
        .unwrap_or_else(|| now + Duration::from_secs(10 * 365 * 86_400))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> Verifier {
        let secret = Key::plain(DecodingKey::from_secret(b"secret").unwrap());
        Verifier::new(
            vec![secret],
            Vec::new(),
            &JwtSettings::default(),
            Duration::ZERO,
        )
    }

    #[test]
    fn signed_tokens_verify_and_carry_claims() {
        let t = Token::new("alice")
            .subscribe("news.*")
            .publish("chat")
            .jti("t1")
            .sign(b"secret");
        let c = verifier().verify(&t).unwrap();
        assert_eq!(c.sub, "alice");
        assert!(c.may_subscribe("news.x") && !c.may_subscribe("chat"));
        assert!(c.may_publish("chat") && !c.may_publish("news.x"));
        assert_eq!(c.jti.as_deref(), Some("t1"));
    }

    #[test]
    fn bad_tokens_are_refused_with_their_reason() {
        let v = verifier();
        let good = Token::new("a").sign(b"secret");
        assert_eq!(
            v.verify(&Token::new("a").sign(b"other")),
            Err(TokenError::Signature)
        );
        assert_eq!(
            v.verify(&Token::new("a").expires_at(1).sign(b"secret")),
            Err(TokenError::Expired)
        );
        assert_eq!(v.verify("a.b"), Err(TokenError::Malformed));
        assert_eq!(v.verify(&format!("{good}.x")), Err(TokenError::Malformed));
        let mut tampered = good.clone();
        tampered.insert(good.find('.').unwrap() + 2, 'A');
        assert!(v.verify(&tampered).is_err());
    }

    #[test]
    fn the_hubs_own_tokens_need_the_process_secret_whatever_the_rules() {
        let settings = JwtSettings {
            issuers: vec!["https://idp.test/".into()],
            algorithms: Some(vec![crate::keys::JwtAlgorithm::RS256]),
            ..JwtSettings::default()
        };
        let v = Verifier::new(Vec::new(), Vec::new(), &settings, Duration::ZERO);
        let own = v.internal_token(&Token::new("$healthz")).unwrap();
        assert_eq!(v.verify(&own).unwrap().sub, "$healthz");
        let header = format!(r#"{{"alg":"HS256","kid":"{INTERNAL_KID}"}}"#);
        let forged = sign_with_header(Token::new("x").claims(), &[0; 32], &header);
        assert_eq!(v.verify(&forged), Err(TokenError::Signature));
        let other = Verifier::new(Vec::new(), Vec::new(), &settings, Duration::ZERO);
        assert_eq!(other.verify(&own), Err(TokenError::Signature));
        let expired = v.internal_token(&Token::new("x").expires_at(1)).unwrap();
        assert_eq!(v.verify(&expired), Err(TokenError::Expired));
    }
}
