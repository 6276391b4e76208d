//! The application handshake: what runs after every upgrade and before `Ready`.
//!
//! A [`Handshaker`] gets the socket through [`HandshakeIo`]: it sends, it receives data frames
//! (control frames are answered underneath and never mistaken for a reply), and any data frame
//! it reads but does not want is passed back with [`HandshakeIo::deliver_later`], to reach the
//! user, in order, once the client is `Ready`.
//!
//! Built-ins: [`Auth`], [`Subscribe`], [`SendMessage`], [`Chain`] (and [`chain_handshakers!`](crate::chain_handshakers)),
//! [`NoHandshake`]. Success and failure are decided by [`Matcher`]s the user supplies, never by
//! guessing at the reply's text. A closure `|io| Box::pin(async move { … })` is a handshaker too.

mod auth;
mod chain;
mod matcher;
mod subscribe;

pub use auth::Auth;
pub use chain::Chain;
pub use matcher::Matcher;
pub use subscribe::{ChannelFormat, SendMessage, Subscribe};

use std::{fmt, sync::Arc, time::Duration};

use futures_util::{future::BoxFuture, Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Error as WsError;

pub use tokio_tungstenite::tungstenite::handshake::client::Response;

use crate::{codec::WsStream, Error, Message};

/// Facts about the connection a handshake runs on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HandshakeContext {
    /// Attempt number in the current retry cycle (from 1).
    pub attempt: u32,
    /// Re-establishments before this one.
    pub reconnects: u64,
    /// The server's upgrade response (status, headers such as the chosen subprotocol).
    pub response: Arc<Response>,
}

/// A WebSocket over any byte stream, as the handshake drives it.
///
/// The handshake runs a few frames per connection, so one virtual call per frame costs
/// nothing, and it keeps [`HandshakeIo`] (and so the public [`Handshaker`] trait) free of the
/// stream type the supervisor was built with.
pub(crate) trait HandshakeSocket:
    Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin + Send
{
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> HandshakeSocket for WsStream<S> {}

/// The socket as a handshake sees it.
pub struct HandshakeIo<'a> {
    ws: &'a mut dyn HandshakeSocket,
    later: &'a mut Vec<Message>,
    context: &'a HandshakeContext,
}

impl fmt::Debug for HandshakeIo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeIo")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl<'a> HandshakeIo<'a> {
    pub(crate) fn new(
        ws: &'a mut dyn HandshakeSocket,
        later: &'a mut Vec<Message>,
        context: &'a HandshakeContext,
    ) -> Self {
        HandshakeIo { ws, later, context }
    }

    /// The connection's facts.
    pub fn context(&self) -> &HandshakeContext {
        self.context
    }

    /// Sends one message and flushes it.
    ///
    /// # Errors
    /// A retryable [`HandshakeError`] when the socket fails.
    pub async fn send(&mut self, msg: Message) -> Result<(), HandshakeError> {
        self.ws
            .send(msg)
            .await
            .map_err(|e| HandshakeError::retryable("send failed").with_source(Error::from_ws(e)))
    }

    /// Sends several messages with one flush: for replaying many frames after a reconnect
    /// without paying a system call per frame.
    ///
    /// # Errors
    /// A retryable [`HandshakeError`] when the socket fails.
    pub async fn send_all(
        &mut self,
        msgs: impl IntoIterator<Item = Message>,
    ) -> Result<(), HandshakeError> {
        let failed = |e| HandshakeError::retryable("send failed").with_source(Error::from_ws(e));
        for msg in msgs {
            self.ws.feed(msg).await.map_err(failed)?;
        }
        self.ws.flush().await.map_err(failed)
    }

    /// Receives the next data frame (Text or Binary). Ping, Pong and Close are never returned:
    /// pings are answered underneath, and a Close ends the handshake with a retryable error.
    ///
    /// # Errors
    /// A retryable [`HandshakeError`] when the socket fails or the server closes.
    pub async fn recv(&mut self) -> Result<Message, HandshakeError> {
        loop {
            match self.ws.next().await {
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => return Ok(msg),
                Some(Ok(Message::Close(frame))) => {
                    return Err(
                        HandshakeError::retryable("server closed during the handshake")
                            .with_source(Error::ServerClosed { frame }),
                    )
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Err(
                        HandshakeError::retryable("receive failed").with_source(Error::from_ws(e))
                    )
                }
                None => {
                    return Err(
                        HandshakeError::retryable("server closed during the handshake")
                            .with_source(Error::ServerClosed { frame: None }),
                    )
                }
            }
        }
    }

    /// Waits for the first data frame that `matches` accepts, passing every other one to
    /// [`HandshakeIo::deliver_later`]. Returns the frame and the index of the matcher that
    /// accepted it.
    ///
    /// # Errors
    /// As [`HandshakeIo::recv`].
    pub async fn recv_matching(
        &mut self,
        matchers: &[&Matcher],
    ) -> Result<(Message, usize), HandshakeError> {
        loop {
            let msg = self.recv().await?;
            if let Some(index) = matchers.iter().position(|m| m.matches(&msg)) {
                return Ok((msg, index));
            }
            self.deliver_later(msg);
        }
    }

    /// Keeps a data frame the handshake read but does not consume; the user gets it after
    /// `Ready`, before anything received later.
    pub fn deliver_later(&mut self, msg: Message) {
        self.later.push(msg);
    }
}

/// Runs after every upgrade, before `Ready`: authenticate, subscribe, announce.
///
/// Return `Ok(())` to go `Ready`, a [`HandshakeError::retryable`] to reconnect with backoff,
/// or a [`HandshakeError::permanent`] to end the client with that error.
pub trait Handshaker: Send + Sync + 'static {
    /// Performs the handshake on a fresh connection.
    fn handshake<'a>(
        &'a self,
        io: &'a mut HandshakeIo<'_>,
    ) -> BoxFuture<'a, Result<(), HandshakeError>>;

    /// How long this handshake may take; `None` uses the client's `handshake_timeout`.
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// A short name for errors and logs ("auth", "subscribe"); chains report failures by it.
    fn name(&self) -> &str {
        "handshake"
    }
}

/// A handshaker from a closure; build it with [`from_fn`].
pub struct FnHandshake<F> {
    f: F,
    name: String,
}

impl<F> fmt::Debug for FnHandshake<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnHandshake")
            .field("name", &self.name)
            .finish()
    }
}

/// A handshaker from a closure returning a boxed future.
///
/// ```
/// use resocket::{handshake::{self, HandshakeError}, Message};
///
/// let hello = handshake::from_fn("hello", |io| {
///     Box::pin(async move {
///         io.send(Message::text("hello")).await?;
///         let reply = io.recv().await?;
///         if reply.to_text().ok() == Some("welcome") {
///             Ok(())
///         } else {
///             Err(HandshakeError::permanent("not welcome"))
///         }
///     })
/// });
/// # let _ = resocket::Client::builder("ws://127.0.0.1:1/").handshake(hello);
/// ```
pub fn from_fn<F>(name: impl Into<String>, f: F) -> FnHandshake<F>
where
    F: for<'a, 'b> Fn(&'a mut HandshakeIo<'b>) -> BoxFuture<'a, Result<(), HandshakeError>>
        + Send
        + Sync
        + 'static,
{
    FnHandshake {
        f,
        name: name.into(),
    }
}

impl<F> Handshaker for FnHandshake<F>
where
    F: for<'a, 'b> Fn(&'a mut HandshakeIo<'b>) -> BoxFuture<'a, Result<(), HandshakeError>>
        + Send
        + Sync
        + 'static,
{
    fn handshake<'a>(
        &'a self,
        io: &'a mut HandshakeIo<'_>,
    ) -> BoxFuture<'a, Result<(), HandshakeError>> {
        (self.f)(io)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Runs `inner` under `limit`, turning the timeout into a retryable, named error.
pub(crate) async fn with_timeout(
    limit: Duration,
    name: &str,
    inner: impl std::future::Future<Output = Result<(), HandshakeError>>,
) -> Result<(), HandshakeError> {
    match tokio::time::timeout(limit, inner).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeError::timed_out(name, limit)),
    }
}

/// The default: no application handshake; `Ready` right after the upgrade.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHandshake;

impl Handshaker for NoHandshake {
    fn handshake<'a>(
        &'a self,
        _io: &'a mut HandshakeIo<'_>,
    ) -> BoxFuture<'a, Result<(), HandshakeError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Why an application handshake failed, and whether to try again.
#[derive(Debug, Clone)]
pub struct HandshakeError {
    permanent: bool,
    /// The limit that ran out, when the failure is a timeout.
    timeout: Option<Duration>,
    step: Option<String>,
    message: String,
    source: Option<Box<Error>>,
}

impl HandshakeError {
    /// A failure worth retrying with backoff (a timeout, a dropped socket, a busy server).
    pub fn retryable(message: impl Into<String>) -> Self {
        HandshakeError {
            permanent: false,
            timeout: None,
            step: None,
            message: message.into(),
            source: None,
        }
    }

    /// A failure that retrying cannot fix (a rejected token); it ends the client.
    pub fn permanent(message: impl Into<String>) -> Self {
        HandshakeError {
            permanent: true,
            ..Self::retryable(message)
        }
    }

    /// A retryable failure: `what` did not finish within `limit`. Answers
    /// [`HandshakeError::is_timeout`], and so [`Error::is_timeout`].
    pub fn timed_out(what: &str, limit: Duration) -> Self {
        HandshakeError {
            timeout: Some(limit),
            ..Self::retryable(format!("{what} timed out after {limit:?}"))
        }
    }

    /// Names the step that failed (set by chains).
    pub fn with_step(mut self, step: impl Into<String>) -> Self {
        self.step.get_or_insert_with(|| step.into());
        self
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: Error) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Whether the client should retry.
    pub fn is_retryable(&self) -> bool {
        !self.permanent
    }

    /// Whether the handshake (or one of its steps) ran out of time.
    pub fn is_timeout(&self) -> bool {
        self.timeout.is_some()
    }

    /// The step that failed, when the handshake was a chain.
    pub fn step(&self) -> Option<&str> {
        self.step.as_deref()
    }

    /// The failure's description.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Some(step) => write!(f, "{step}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
