//! Fresh tokens for a [`HubClient`](super::HubClient): the user's token source, the token in
//! use with its expiry, and the timer that refreshes it some margin before `exp`.
//!
//! The token in use sits in a `watch`: the reconnect handshake reads it (and fetches a fresh
//! one when it is about to expire), and the session task re-arms its refresh timer whenever it
//! changes. Neither is on the per-message path.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use futures_util::future::{BoxFuture, OptionFuture};
use tokio::{sync::watch, time::Sleep};

/// How long the session waits before asking a failing token source again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// The shortest time between two scheduled refreshes, so a source that hands out tokens already
/// (nearly) expired cannot make the client refresh in a tight loop.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(1);

type Source = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// A token and its expiry (`None` when the token is not a JWT with a numeric `exp`).
#[derive(Clone)]
pub(super) struct Current {
    token: String,
    exp: Option<u64>,
}

/// The token source and the token in use; cheap to clone.
#[derive(Clone)]
pub(super) struct Tokens {
    source: Source,
    margin: Duration,
    current: Arc<watch::Sender<Option<Current>>>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token itself.
        f.debug_struct("Tokens")
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    pub(super) fn new<F, Fut, E>(source: F, margin: Duration) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: fmt::Display + 'static,
    {
        let source: Source = Arc::new(move || {
            let fut = source();
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        });
        Tokens {
            source,
            margin,
            current: Arc::new(watch::Sender::new(None)),
        }
    }

    pub(super) fn set_margin(&mut self, margin: Duration) {
        self.margin = margin;
    }

    /// Asks the source for a fresh token and makes it the one in use.
    ///
    /// # Errors
    /// The source's error, as text.
    pub(super) async fn fetch(self) -> Result<String, String> {
        let token = (self.source)().await?;
        let exp = exp_of(&token);
        self.current.send_replace(Some(Current {
            token: token.clone(),
            exp,
        }));
        Ok(token)
    }

    /// The token to connect with: the one in use while it is valid beyond the margin, else a
    /// fresh one.
    ///
    /// # Errors
    /// The source's error, as text.
    pub(super) async fn for_connect(&self) -> Result<String, String> {
        let cached = self.current.borrow().clone();
        if let Some(Current {
            token,
            exp: Some(exp),
        }) = cached
        {
            if remaining(exp) > self.margin {
                return Ok(token);
            }
        }
        self.clone().fetch().await
    }

    /// The session's side: a timer that fires when the token in use needs replacing.
    pub(super) fn refresher(&self) -> Refresher {
        let mut changes = self.current.subscribe();
        changes.mark_changed();
        Refresher {
            tokens: self.clone(),
            changes,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
            fetching: None,
        }
    }

    /// How long after now to refresh a token expiring at `exp`: `margin` before it, or halfway
    /// there when the token lives shorter than twice the margin.
    fn refresh_delay(&self, exp: u64) -> Duration {
        let left = remaining(exp);
        let delay = if left > self.margin * 2 {
            left - self.margin
        } else {
            left / 2
        };
        delay.max(MIN_REFRESH_GAP)
    }
}

/// Schedules refreshes and runs the source; owned by the session task.
pub(super) struct Refresher {
    tokens: Tokens,
    changes: watch::Receiver<Option<Current>>,
    timer: Pin<Box<Sleep>>,
    armed: bool,
    fetching: Option<BoxFuture<'static, Result<String, String>>>,
}

impl Refresher {
    /// Resolves with the next fresh token to send in a `refresh` frame.
    ///
    /// # Cancel safety
    /// Cancel-safe: the timer and a running fetch live in `self`, so dropping this future and
    /// calling it again resumes where it was.
    pub(super) async fn next(&mut self) -> String {
        loop {
            let fetching = self.fetching.is_some();
            tokio::select! {
                biased;
                Ok(()) = self.changes.changed() => self.rearm(),
                () = self.timer.as_mut(), if self.armed && !fetching => {
                    self.armed = false;
                    self.fetching = Some(Box::pin(self.tokens.clone().fetch()));
                }
                Some(result) = OptionFuture::from(self.fetching.as_mut()), if fetching => {
                    self.fetching = None;
                    match result {
                        // The fetch replaced the token in use, which re-arms the timer.
                        Ok(token) => return token,
                        Err(error) => {
                            tracing::warn!(%error, "token source failed; retrying");
                            self.arm(RETRY_AFTER_FAILURE);
                        }
                    }
                }
            }
        }
    }

    fn rearm(&mut self) {
        let exp = self
            .changes
            .borrow_and_update()
            .as_ref()
            .and_then(|c| c.exp);
        match exp {
            Some(exp) => {
                let delay = self.tokens.refresh_delay(exp);
                self.arm(delay);
            }
            // An opaque token: nothing to schedule; an expiry close makes the client reconnect
            // with a fresh one.
            None => self.armed = false,
        }
    }

    fn arm(&mut self, delay: Duration) {
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + delay);
        self.armed = true;
    }
}

/// Time left until `exp` (seconds since the Unix epoch), zero once past.
fn remaining(exp: u64) -> Duration {
    (UNIX_EPOCH + Duration::from_secs(exp))
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// The `exp` claim of a JWT, read without checking the signature (the hub checks it).
fn exp_of(token: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: u64,
    }
    let payload = token.split('.').nth(1)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Exp>(&payload).ok().map(|c| c.exp)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn exp_is_read_from_the_payload() {
        assert_eq!(
            exp_of(&jwt(r#"{"sub":"a","exp":1767225600}"#)),
            Some(1_767_225_600)
        );
        assert_eq!(exp_of(&jwt(r#"{"sub":"a"}"#)), None);
        assert_eq!(exp_of("opaque-token"), None);
    }

    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// A source handing out JWTs valid for `ttl`, failing the calls numbered in `failing`.
    fn source(ttl: u64, failing: std::ops::Range<usize>) -> (Tokens, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let tokens = Tokens::new(
            move || {
                let call = counter.fetch_add(1, Relaxed);
                let fail = failing.contains(&call);
                async move {
                    if fail {
                        return Err("token service unavailable");
                    }
                    Ok(jwt(&format!(
                        r#"{{"exp":{},"n":{call}}}"#,
                        now_secs() + ttl
                    )))
                }
            },
            Duration::from_secs(30),
        );
        (tokens, calls)
    }

    #[tokio::test(start_paused = true)]
    async fn the_refresher_asks_the_source_a_margin_before_exp() {
        let (tokens, calls) = source(3600, 0..0);
        let first = tokens.for_connect().await.unwrap();
        // Valid well beyond the margin: a reconnect reuses it.
        assert_eq!(tokens.for_connect().await.unwrap(), first);
        let mut refresher = tokens.refresher();
        let start = tokio::time::Instant::now();
        let fresh = refresher.next().await;
        let waited = start.elapsed();
        assert_ne!(fresh, first);
        assert!(
            waited > Duration::from_secs(3560) && waited <= Duration::from_secs(3570),
            "{waited:?}"
        );
        assert_eq!(calls.load(Relaxed), 2);
        assert_eq!(tokens.for_connect().await.unwrap(), fresh);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_source_is_asked_again_a_second_later() {
        // The wall clock stands still under the paused tokio clock, so `exp` stays 60 s away:
        // the refresh comes halfway (the token lives less than twice the margin).
        let (tokens, calls) = source(60, 1..3);
        tokens.for_connect().await.unwrap();
        let mut refresher = tokens.refresher();
        let start = tokio::time::Instant::now();
        refresher.next().await;
        let waited = start.elapsed();
        // About 30 s to the first try, then two failures a second apart.
        assert!(
            waited > Duration::from_secs(30) && waited <= Duration::from_secs(32),
            "{waited:?}"
        );
        assert_eq!(calls.load(Relaxed), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_opaque_token_schedules_no_refresh() {
        let tokens = Tokens::new(
            || async { Ok::<_, String>("opaque".to_owned()) },
            Duration::from_secs(30),
        );
        tokens.for_connect().await.unwrap();
        let mut refresher = tokens.refresher();
        let waited = tokio::time::timeout(Duration::from_secs(86_400), refresher.next()).await;
        assert!(waited.is_err(), "no exp, no refresh");
    }

    #[test]
    fn refresh_comes_a_margin_early_or_halfway_never_in_a_tight_loop() {
        let tokens = Tokens::new(
            || async { Ok::<_, String>(String::new()) },
            Duration::from_secs(30),
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let far = tokens.refresh_delay(now + 3600);
        assert!(far <= Duration::from_secs(3570) && far > Duration::from_secs(3560));
        let short = tokens.refresh_delay(now + 10);
        assert!(short <= Duration::from_secs(5) && short >= Duration::from_secs(4));
        assert_eq!(tokens.refresh_delay(now.saturating_sub(5)), MIN_REFRESH_GAP);
    }
}
