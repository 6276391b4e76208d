//! Revocation from outside the process: the deny-list format, a deny-list file reloaded when it
//! changes, and the admin endpoint `POST /admin/revoke`, guarded by its own secret.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use crate::hub::Hub;

/// Parses deny-list text: one entry per line. `jti:<id>` revokes the token with that id,
/// `sub:<id>` every token of that subject, and a bare `<id>` either. Blank lines and lines
/// starting with `#` are skipped; space around an entry or after its prefix is ignored.
pub(crate) fn parse(text: &str) -> HashSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(normalize)
        .collect()
}

/// An entry as the deny-list stores it: `jti: x` and `jti:x` are one entry.
pub(crate) fn normalize(entry: &str) -> String {
    let entry = entry.trim();
    for prefix in ["jti:", "sub:"] {
        if let Some(id) = entry.strip_prefix(prefix) {
            return format!("{prefix}{}", id.trim());
        }
    }
    entry.to_string()
}

/// Whether a deny-list names a token with this subject and id.
pub(crate) fn names(list: &HashSet<String>, sub: &str, jti: Option<&str>) -> bool {
    // Checked on connect and on every change of the list, never per message, so the
    // formatted keys cost nothing that matters; an empty list costs nothing at all.
    !list.is_empty()
        && (list.contains(sub)
            || list.contains(&format!("sub:{sub}"))
            || jti.is_some_and(|j| list.contains(j) || list.contains(&format!("jti:{j}"))))
}

/// Reads the deny-list file once, for the hub's start.
///
/// # Errors
///
/// The file cannot be read (or is not UTF-8).
pub(crate) fn load(path: &Path) -> io::Result<HashSet<String>> {
    crate::file_watch::load(path, |text| Ok(parse(text)))
}

/// Rereads the file whenever it changes, until shutdown. A file that disappears or cannot be
/// read leaves the last list in force.
pub(crate) async fn watch(hub: Hub, path: PathBuf) {
    let shared = hub.shared;
    let shutdown = shared.shutdown_rx();
    let shown = path.display().to_string();
    crate::file_watch::watch(
        shutdown,
        path,
        "revocation file",
        |text| Ok(parse(text)),
        |list: HashSet<String>| {
            tracing::info!(entries = list.len(), path = %shown, "revocation file loaded");
            shared.set_file_revocations(list);
        },
    )
    .await;
}

/// The admin routes, mounted when the hub has an admin secret.
pub(crate) fn admin_router(hub: Hub) -> Router {
    Router::new()
        .route("/admin/revoke", post(revoke))
        .with_state(hub)
}

/// `POST /admin/revoke` with `Authorization: Bearer <admin secret>` and deny-list lines as
/// the body: revokes each entry as [`Hub::revoke`] does.
async fn revoke(State(hub): State<Hub>, headers: HeaderMap, body: String) -> Response {
    let Some(secret) = hub.shared.config.admin_secret.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Digests are compared rather than the secrets, so the comparison's timing says nothing
    // useful about the secret.
    let digest = |s: &[u8]| ring::digest::digest(&ring::digest::SHA256, s);
    let allowed =
        presented.is_some_and(|p| digest(p.as_bytes()).as_ref() == digest(secret).as_ref());
    if !allowed {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "admin secret required\n",
        )
            .into_response();
    }
    let entries = parse(&body);
    if entries.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "no entries: send one `jti:<id>` or `sub:<id>` per line\n",
        )
            .into_response();
    }
    let n = entries.len();
    hub.revoke_all(entries);
    tracing::info!(entries = n, "revoked through the admin endpoint");
    format!("revoked {n}\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_name_a_token_id_a_subject_or_either() {
        let list = parse("# a comment\n\njti:t1\n sub: bob \nboth\n");
        assert_eq!(list.len(), 3);
        assert!(names(&list, "alice", Some("t1")));
        assert!(!names(&list, "t1", None), "jti:t1 is no subject");
        assert!(names(&list, "bob", None));
        assert!(
            !names(&list, "alice", Some("bob")),
            "sub:bob is no token id"
        );
        assert!(names(&list, "both", None) && names(&list, "x", Some("both")));
        assert!(!names(&HashSet::new(), "alice", Some("t1")));
    }
}
