//! The hub's error type.

use std::io;

/// A result with the hub's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the hub's library calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range or inconsistent; the message names it.
    #[error("invalid setting `{setting}`: {reason}")]
    Config {
        /// The builder method's name.
        setting: &'static str,
        /// Why the value is refused.
        reason: &'static str,
    },
    /// Serving failed at the socket level.
    #[error("serving failed")]
    Io(#[from] io::Error),
    /// The TLS settings could not be used (a PEM without a certificate or key).
    #[error("tls setting rejected: {0}")]
    Tls(String),
    /// A token could not be verified.
    #[error("token rejected")]
    Token(#[from] TokenError),
    /// The revocation file could not be read when the hub was built.
    #[error("cannot read the revocation file {}", path.display())]
    RevocationFile {
        /// The file's path, as configured.
        path: std::path::PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
    /// The Redis engine could not be set up (a malformed URL, or no Tokio runtime to run in).
    #[error("redis engine rejected: {reason}")]
    Redis {
        /// Why.
        reason: String,
    },
    /// A public key or JWKS file could not be used when the hub was built.
    #[error("cannot use the key file {}", path.display())]
    KeyFile {
        /// The file's path, as configured.
        path: std::path::PathBuf,
        /// Why: unreadable, or no usable key in it (`InvalidData`).
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Whether this is a refused setting.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::Config { .. })
    }

    /// Whether this is a rejected token.
    pub fn is_token(&self) -> bool {
        matches!(self, Error::Token(_))
    }
}

/// Why a token was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts, or parts that do not decode to the expected JSON.
    #[error("malformed token")]
    Malformed,
    /// The header names an algorithm the hub does not accept.
    #[error("unsupported token algorithm")]
    Algorithm,
    /// The signature matches none of the hub's keys.
    #[error("bad token signature")]
    Signature,
    /// The hub has no key for the header's algorithm and `kid`.
    #[error("no key for this token")]
    UnknownKey,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not valid yet")]
    NotYetValid,
    /// `iss` is missing or not an accepted issuer.
    #[error("token issuer not accepted")]
    Issuer,
    /// `aud` is missing or names no accepted audience.
    #[error("token audience not accepted")]
    Audience,
    /// The token's `jti` or `sub` is on the deny-list.
    #[error("token revoked")]
    Revoked,
}
