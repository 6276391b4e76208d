//! Where token keys come from: the algorithms the hub accepts, public keys read from PEM files,
//! and a JWKS file reread when it changes.

use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::Error;
use crate::hub::Hub;

/// A JWS signature algorithm the hub can verify tokens with (the `alg` of a token's header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(clippy::upper_case_acronyms)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256, under the hub's secret.
    HS256,
    /// HMAC with SHA-384, under the hub's secret.
    HS384,
    /// HMAC with SHA-512, under the hub's secret.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// EdDSA on Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    /// Every algorithm the hub can verify.
    pub const ALL: [JwtAlgorithm; 12] = [
        JwtAlgorithm::HS256,
        JwtAlgorithm::HS384,
        JwtAlgorithm::HS512,
        JwtAlgorithm::RS256,
        JwtAlgorithm::RS384,
        JwtAlgorithm::RS512,
        JwtAlgorithm::PS256,
        JwtAlgorithm::PS384,
        JwtAlgorithm::PS512,
        JwtAlgorithm::ES256,
        JwtAlgorithm::ES384,
        JwtAlgorithm::EdDSA,
    ];

    /// The name a token's header carries, such as `RS256`.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::HS256 => "HS256",
            JwtAlgorithm::HS384 => "HS384",
            JwtAlgorithm::HS512 => "HS512",
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::RS384 => "RS384",
            JwtAlgorithm::RS512 => "RS512",
            JwtAlgorithm::PS256 => "PS256",
            JwtAlgorithm::PS384 => "PS384",
            JwtAlgorithm::PS512 => "PS512",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::ES384 => "ES384",
            JwtAlgorithm::EdDSA => "EdDSA",
        }
    }

    pub(crate) fn to_jwt(self) -> Algorithm {
        match self {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::HS384 => Algorithm::HS384,
            JwtAlgorithm::HS512 => Algorithm::HS512,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::RS384 => Algorithm::RS384,
            JwtAlgorithm::RS512 => Algorithm::RS512,
            JwtAlgorithm::PS256 => Algorithm::PS256,
            JwtAlgorithm::PS384 => Algorithm::PS384,
            JwtAlgorithm::PS512 => Algorithm::PS512,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::ES384 => Algorithm::ES384,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        }
    }
}

impl std::fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JwtAlgorithm {
    type Err = Error;

    /// Parses a name as a token's header writes it (`RS256`, `EdDSA`), in any case.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a name that is none of [`JwtAlgorithm::ALL`].
    fn from_str(name: &str) -> Result<Self, Error> {
        JwtAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(name.trim()))
            .ok_or(Error::Config {
                setting: "jwt_algorithms",
                reason: "unknown algorithm: use HS256, HS384, HS512, RS256, RS384, RS512, \
                         PS256, PS384, PS512, ES256, ES384 or EdDSA",
            })
    }
}

/// Token settings beyond the HS256 secret, as the builder collects them.
#[derive(Debug, Clone, Default)]
pub(crate) struct JwtSettings {
    /// PEM files of public keys (RSA, P-256, P-384 or Ed25519), read when the hub is built.
    pub(crate) public_keys: Vec<PathBuf>,
    /// A JWKS file, read when the hub is built and reread when it changes.
    pub(crate) jwks_file: Option<PathBuf>,
    /// Accepted `iss` values; empty means `iss` is not checked.
    pub(crate) issuers: Vec<String>,
    /// Accepted `aud` values; empty means `aud` is not checked.
    pub(crate) audiences: Vec<String>,
    /// Accepted header `alg`s; `None` means HS256 and every public-key algorithm.
    pub(crate) algorithms: Option<Vec<JwtAlgorithm>>,
}

impl JwtSettings {
    /// Whether any public key or key file is set.
    pub(crate) fn has_keys(&self) -> bool {
        !self.public_keys.is_empty() || self.jwks_file.is_some()
    }

    /// The header `alg`s a token may carry.
    pub(crate) fn algorithms(&self) -> Vec<Algorithm> {
        match &self.algorithms {
            Some(list) => list.iter().map(|a| a.to_jwt()).collect(),
            // HS384 and HS512 stay out unless asked for, so the secret keeps meaning what it
            // always meant; every public-key algorithm is in, since a key verifies only its own
            // family's signatures.
            None => JwtAlgorithm::ALL
                .into_iter()
                .filter(|a| !matches!(a, JwtAlgorithm::HS384 | JwtAlgorithm::HS512))
                .map(JwtAlgorithm::to_jwt)
                .collect(),
        }
    }
}

/// A key a token's signature may be checked with.
pub(crate) struct Key {
    /// The JWKS `kid`; keys from PEM files and the secret have none and fit any `kid`.
    pub(crate) kid: Option<String>,
    /// The JWKS `alg`: when present, the only algorithm the key is used with.
    pub(crate) alg: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

impl Key {
    /// A key without `kid` or `alg`.
    pub(crate) fn plain(key: DecodingKey) -> Self {
        Key {
            kid: None,
            alg: None,
            key,
        }
    }

    /// Whether this key may verify a token whose header names `alg` and `kid`.
    pub(crate) fn fits(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        self.key.family() == alg.family()
            && self.alg.is_none_or(|a| a == alg)
            && match (kid, &self.kid) {
                (Some(wanted), Some(own)) => wanted == own,
                _ => true,
            }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn invalid(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// Reads a PEM public key: RSA (`PUBLIC KEY` or `RSA PUBLIC KEY`), EC on P-256 or P-384, or
/// Ed25519.
///
/// # Errors
///
/// [`Error::KeyFile`]: the file cannot be read or holds no such public key.
pub(crate) fn load_pem(path: &Path) -> Result<Key, Error> {
    let key_file = |source| Error::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    let pem = std::fs::read(path).map_err(key_file)?;
    DecodingKey::from_rsa_pem(&pem)
        .or_else(|_| DecodingKey::from_ec_pem(&pem))
        .or_else(|_| DecodingKey::from_ed_pem(&pem))
        .map(Key::plain)
        .map_err(|_| key_file(invalid("no RSA, EC or Ed25519 public key in this PEM")))
}

/// Parses a JWKS document: `{"keys":[…]}`. Keys marked for encryption (`"use":"enc"`) and keys
/// of a type the hub cannot use are skipped.
///
/// # Errors
///
/// The text is no JWKS, or holds no usable signing key.
pub(crate) fn parse_jwks(text: &str) -> io::Result<Vec<Key>> {
    let set: JwkSet = serde_json::from_str(text).map_err(invalid)?;
    let keys: Vec<Key> = set
        .keys
        .iter()
        .filter(|jwk| jwk.common.public_key_use != Some(PublicKeyUse::Encryption))
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            let alg = match jwk.common.key_algorithm {
                Some(alg) => Some(Algorithm::try_from(alg).ok()?),
                None => None,
            };
            Some(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            })
        })
        .collect();
    if keys.is_empty() {
        return Err(invalid("no usable signing key in this JWKS"));
    }
    Ok(keys)
}

/// Reads the JWKS file once, for the hub's start.
///
/// # Errors
///
/// [`Error::KeyFile`]: the file cannot be read or holds no usable key.
pub(crate) fn load_jwks(path: &Path) -> Result<Vec<Key>, Error> {
    crate::file_watch::load(path, parse_jwks).map_err(|source| Error::KeyFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Rereads the JWKS file whenever it changes, until shutdown; a file that disappears or no
/// longer parses leaves the last keys in force.
pub(crate) async fn watch_jwks(hub: Hub, path: PathBuf) {
    let shared = hub.shared;
    let shutdown = shared.shutdown_rx();
    let shown = path.display().to_string();
    crate::file_watch::watch(shutdown, path, "JWKS file", parse_jwks, |keys: Vec<Key>| {
        tracing::info!(keys = keys.len(), path = %shown, "JWKS file loaded");
        if let Some(verifier) = &shared.verifier {
            verifier.set_jwks(keys);
        }
    })
    .await;
}
