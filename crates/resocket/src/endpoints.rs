//! The endpoints a client connects to, and how it moves between them after a failure.
//!
//! A client has one or more endpoints (URLs, or whole upgrade requests). Every attempt goes to
//! one of them; when it fails, or a connection drops, the next attempt goes to the next one, in
//! order and round again. The backoff stays one per client: moving to another endpoint is not a
//! fresh start, so a client whose every endpoint is down meets growing delays, as with one.
//!
//! A permanent failure (HTTP 401/403/404, a bad certificate, a "go away" close code) on one
//! endpoint is not final at once: behind a load balancer one node may be misconfigured while
//! the others serve. The client skips that endpoint and moves on; the failure becomes final
//! when every endpoint has failed permanently since the client was last `Ready`. Bad
//! credentials, which every endpoint refuses, so cost one attempt per endpoint, not a loop.

use std::sync::Arc;

use http::Uri;
use tokio_tungstenite::tungstenite::handshake::client::Request;

/// What a [request factory](crate::ClientBuilder::request_factory) knows of the attempt it
/// builds the upgrade request for.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestContext<'a> {
    /// The attempt number in the current retry cycle, from 1.
    pub attempt: u32,
    /// The endpoint this attempt goes to, as given to the builder: start from it (it is
    /// `Clone`) to sign its URL or add a fresh token.
    pub endpoint: &'a Request,
    /// The endpoint's position in the builder's list, from 0.
    pub index: usize,
}

/// One endpoint: its request as given, and its name for events and logs.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) request: Request,
    /// The URL without credentials or query, which often carry tokens.
    pub(crate) name: Arc<str>,
}

impl Endpoint {
    pub(crate) fn new(request: Request) -> Endpoint {
        let name = redact(request.uri()).into();
        Endpoint { request, name }
    }
}

/// The URL without credentials or query, for logs and events.
fn redact(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("ws"),
        uri.authority()
            .map(|a| a.as_str().rsplit('@').next().unwrap_or(""))
            .unwrap_or(""),
        uri.path()
    )
}

/// The endpoint list with the rotation's state, owned by the supervisor.
#[derive(Debug)]
pub(crate) struct Endpoints {
    list: Vec<Endpoint>,
    current: usize,
    /// Endpoints that failed permanently since the client was last `Ready`: skipped while
    /// another one is left.
    refused: Vec<bool>,
}

impl Endpoints {
    /// The rotation over `list`, starting at its first endpoint. `list` is never empty: the
    /// builder refuses an empty one.
    pub(crate) fn new(list: Vec<Endpoint>) -> Endpoints {
        debug_assert!(
            !list.is_empty(),
            "the builder refuses an empty endpoint list"
        );
        let refused = vec![false; list.len()];
        Endpoints {
            list,
            current: 0,
            refused,
        }
    }

    /// How many endpoints there are.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// The endpoint the next attempt goes to, and its index.
    pub(crate) fn current(&self) -> (usize, &Endpoint) {
        (self.current, &self.list[self.current])
    }

    /// Records that the attempt on the current endpoint failed, `permanent`ly or not, and moves
    /// to the next endpoint. Returns `false` when every endpoint has now failed permanently:
    /// the failure is final.
    pub(crate) fn failed(&mut self, permanent: bool) -> bool {
        if permanent {
            self.refused[self.current] = true;
        }
        let n = self.list.len();
        match (1..=n)
            .map(|step| (self.current + step) % n)
            .find(|&i| !self.refused[i])
        {
            Some(next) => {
                self.current = next;
                true
            }
            None => false,
        }
    }

    /// Records that the client became `Ready`: every endpoint gets its chance again.
    pub(crate) fn connected(&mut self) {
        self.refused.fill(false);
    }
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::*;

    fn endpoints(urls: &[&str]) -> Endpoints {
        Endpoints::new(
            urls.iter()
                .map(|u| Endpoint::new(u.into_client_request().unwrap()))
                .collect(),
        )
    }

    #[test]
    fn failures_move_round_the_list() {
        let mut e = endpoints(&["ws://a/", "ws://b/", "ws://c/"]);
        let mut seen = vec![e.current().0];
        for _ in 0..4 {
            assert!(e.failed(false));
            seen.push(e.current().0);
        }
        assert_eq!(seen, [0, 1, 2, 0, 1]);
    }

    #[test]
    fn a_permanent_failure_is_final_only_once_every_endpoint_had_one() {
        let mut e = endpoints(&["ws://a/", "ws://b/", "ws://c/"]);
        assert!(e.failed(true), "a refused, b and c left");
        assert!(e.failed(false), "b down for now");
        assert_eq!(e.current().0, 2);
        assert!(e.failed(false), "c down for now");
        assert_eq!(e.current().0, 1, "a is skipped");
        assert!(e.failed(true), "b refused, c left");
        assert_eq!(e.current().0, 2);
        assert!(!e.failed(true), "every endpoint refused");
    }

    #[test]
    fn ready_gives_refused_endpoints_their_chance_again() {
        let mut e = endpoints(&["ws://a/", "ws://b/"]);
        assert!(e.failed(true));
        e.connected();
        assert!(e.failed(false));
        assert_eq!(e.current().0, 0, "a is tried again after a Ready");
    }

    #[test]
    fn one_endpoint_fails_permanently_at_once() {
        let mut e = endpoints(&["ws://a/"]);
        assert!(e.failed(false));
        assert_eq!(e.current().0, 0);
        assert!(!e.failed(true));
    }

    #[test]
    fn names_leave_out_credentials_and_query() {
        let e = Endpoint::new(
            "wss://user:pw@feed.example.com:9443/ws?token=secret"
                .into_client_request()
                .unwrap(),
        );
        assert_eq!(&*e.name, "wss://feed.example.com:9443/ws");
    }
}
