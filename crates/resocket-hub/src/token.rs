//! HS256 JSON Web Tokens: the claims the hub reads, signing for tests and the CLI, and verification.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::error::TokenError;
use crate::glob;

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
    const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
    // Serializing plain strings and numbers cannot fail.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let mut out = URL_SAFE_NO_PAD.encode(HEADER);
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, out.as_bytes());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    out
}

/// Verifies an HS256 JWT against a key and the clock.
#[derive(Clone)]
pub(crate) struct Verifier {
    key: hmac::Key,
    /// Clock skew tolerated on `exp`.
    leeway: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Header<'a> {
    alg: &'a str,
}

impl Verifier {
    pub(crate) fn new(secret: &[u8], leeway: Duration) -> Self {
        Verifier {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            leeway: leeway.as_secs(),
        }
    }

    /// Checks the signature first, then the header and the expiry, and returns the claims.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed)?;
        let signed = &token[..h.len() + 1 + p.len()];
        // The signature is checked before anything else is parsed, so an attacker's JSON never
        // reaches the parser unless it carries a valid signature.
        hmac::verify(&self.key, signed.as_bytes(), &sig).map_err(|_| TokenError::Signature)?;
        let header = URL_SAFE_NO_PAD
            .decode(h)
            .map_err(|_| TokenError::Malformed)?;
        let header: Header<'_> =
            serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.exp + self.leeway <= now_secs() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
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
        Verifier::new(b"secret", Duration::ZERO)
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
}
