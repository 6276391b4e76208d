//! `Client`, the cheap cloneable handle, and `ClientBuilder`, which validates and starts it.

use std::{fmt, sync::Arc, time::Duration};

use http::{header, HeaderName, HeaderValue};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_tungstenite::tungstenite::{
    client::IntoClientRequest,
    handshake::client::{generate_key, Request},
};

use crate::{
    config::ClientConfig,
    endpoints::{Endpoint, Endpoints, RequestContext},
    error::{CloseFrameError, ConfigError},
    extension::{Extension, Extensions},
    handshake::{ChannelFormat, Handshaker, NoHandshake},
    inbound::{self, Messages, Received},
    observe::{Events, FanOut, StatusWatch},
    queue::{self, QueueTx},
    retry::Backoff,
    state::{ConnectionEvent, ConnectionState, Snapshot, Stats, Status},
    supervisor::{Command, Lifecycle, Network, Pipes, Publisher, Requests, Supervisor},
    transport::{Connector, Target, TransportOptions},
    CloseCode, CloseFrame, Error, Message, SendError,
};

mod sink;

use sink::SinkState;

type RequestFactory =
    Arc<dyn Fn(RequestContext<'_>) -> Result<http::Request<()>, Error> + Send + Sync>;
type Classifier = Arc<dyn Fn(&Error) -> bool + Send + Sync>;

/// A handle to a resilient WebSocket connection.
///
/// Cheap to clone: it holds channel senders and shared read-only views, never the socket and
/// never a lock. The connection itself lives in a background task (the supervisor), which
/// reconnects, re-runs the handshake, and keeps the outbound queue across connections. When the
/// last handle is dropped the task closes the connection cleanly (Close 1000) and ends.
///
/// Besides [`Client::send`] and [`Client::try_send`], a `Client` is a
/// [`Sink<Message>`](futures_util::Sink) (see [the `Sink` section](#sink)).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use resocket::{Client, Message};
///
/// let (client, mut messages) = Client::builder("wss://feed.example.com/ws").connect().await?;
/// client.send(Message::text(r#"{"op":"subscribe","channel":"trades"}"#)).await?;
/// while let Some(msg) = messages.recv().await {
///     println!("{msg}");
/// }
/// # Ok(()) }
/// ```
///
/// # Sink
/// `poll_ready` waits while a message this handle started to send is still waiting for room in
/// the outbound queue; `start_send` queues the message at once when the queue has room, and
/// otherwise keeps it (one message, as a pending [`Client::send`] would) until it fits. So the
/// queue's bounds hold, and a fast producer is slowed down to the pace of the socket.
/// `poll_flush` returns once every message given to this handle is in the queue; the queue is
/// then written in order as [`Client::send`]'s messages are (it does not wait for the socket).
/// `poll_close` is [`Client::close`]: the queue is written, the close handshake runs, the task
/// ends. Errors are [`SendError`]s carrying the message back: the same as [`Client::try_send`].
/// A permanent failure that ended the client is not a `Sink` error: [`Client::closed`] and
/// [`Messages::end_reason`] report it.
///
/// Each clone is a sink of its own: a clone starts with nothing in flight. The inherent
/// [`Client::send`] and [`Client::close`] mean the same as `SinkExt::send` and
/// `SinkExt::close` and take precedence in method syntax; `feed`, `flush` and `send_all`
/// are the `Sink`'s only.
///
/// ```no_run
/// # async fn demo(client: resocket::Client) -> Result<(), resocket::SendError<resocket::Message>> {
/// use futures_util::{stream, SinkExt};
/// use resocket::Message;
///
/// let mut sink = client.clone();
/// let mut batch = stream::iter((0..100).map(|i| Ok(Message::text(i.to_string()))));
/// sink.send_all(&mut batch).await?;
/// # Ok(()) }
/// ```
pub struct Client {
    queue: QueueTx,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
    events: broadcast::Sender<ConnectionEvent>,
    fan_out: Option<broadcast::Sender<Message>>,
    stats: Arc<Stats>,
    has_channel_format: bool,
    drain_on_close: bool,
    /// This handle's `Sink` work in progress; never shared with a clone.
    sink: SinkState,
}

impl Clone for Client {
    fn clone(&self) -> Self {
        Client {
            queue: self.queue.clone(),
            commands: self.commands.clone(),
            status: self.status.clone(),
            events: self.events.clone(),
            fan_out: self.fan_out.clone(),
            stats: self.stats.clone(),
            has_channel_format: self.has_channel_format,
            drain_on_close: self.drain_on_close,
            sink: SinkState::default(),
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts building a client for a `ws://` or `wss://` URL, or a full `http::Request`.
    ///
    /// Nothing is checked here; [`ClientBuilder::build`] (and `spawn`, `connect`) report a bad
    /// URL as [`Error::Config`].
    pub fn builder<R: IntoClientRequest>(request: R) -> ClientBuilder {
        ClientBuilder::new(vec![request.into_client_request().map_err(Error::from_ws)])
    }

    /// Starts building a client with several endpoints, tried in order: after a failed attempt
    /// or a dropped connection, the next attempt goes to the next endpoint (and round again).
    /// The backoff stays one per client, so moving on does not reset it. A permanent failure
    /// (HTTP 401/403/404, a bad certificate) skips its endpoint and is final only once every
    /// endpoint has failed permanently since the client was last `Ready`.
    ///
    /// Nothing is checked here; [`ClientBuilder::build`] (and `spawn`, `connect`) report a bad
    /// URL, or an empty list, as [`Error::Config`]. See also [`ClientBuilder::endpoint`].
    pub fn builder_with_endpoints<I>(endpoints: I) -> ClientBuilder
    where
        I: IntoIterator,
        I::Item: IntoClientRequest,
    {
        ClientBuilder::new(
            endpoints
                .into_iter()
                .map(|r| r.into_client_request().map_err(Error::from_ws))
                .collect(),
        )
    }

    /// Queues a Text or Binary message without waiting.
    ///
    /// # Errors
    /// The message comes back inside the error: [`SendError::Full`] when the queue is at its
    /// bound, [`SendError::NotConnected`] under the `Reject` policy while not `Ready`,
    /// [`SendError::Closed`] once the client is closing or closed, and
    /// [`SendError::Unsupported`] for a Ping, Pong, Close or raw `Frame` (close with
    /// [`Client::close_with`]; Pings are sent by the heartbeat and Pongs by the client itself).
    pub fn try_send(&self, msg: impl Into<Message>) -> Result<(), SendError<Message>> {
        self.queue.try_send(self.unless_closing(msg.into())?)
    }

    /// Queues a Text or Binary message, waiting for room.
    ///
    /// # Errors
    /// [`SendError::NotConnected`] under the `Reject` policy while not `Ready`,
    /// [`SendError::Closed`] once the client is closing or closed, and
    /// [`SendError::Unsupported`] for a control or raw frame, as with [`Client::try_send`]; the
    /// message comes back inside.
    ///
    /// # Cancel safety
    /// If the future is dropped before it completes, the message was not queued and is dropped
    /// with it. Use [`Client::send_timeout`] or [`Client::try_send`] to keep it.
    pub async fn send(&self, msg: impl Into<Message>) -> Result<(), SendError<Message>> {
        self.queue.send(self.unless_closing(msg.into())?).await
    }

    /// Queues a message, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`Client::send`], plus [`SendError::Timeout`] with the message inside.
    pub async fn send_timeout(
        &self,
        msg: impl Into<Message>,
        timeout: Duration,
    ) -> Result<(), SendError<Message>> {
        self.queue
            .send_timeout(self.unless_closing(msg.into())?, timeout)
            .await
    }

    /// Refuses a message once a close was asked for, before the supervisor has closed the
    /// queue: what was sent before the close is written, nothing after it.
    fn unless_closing(&self, msg: Message) -> Result<Message, SendError<Message>> {
        if self.stats.is_close_requested() {
            return Err(SendError::Closed(msg));
        }
        Ok(msg)
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.status.borrow().state.clone()
    }

    /// Whether the client is `Ready`: connected and past its handshake. A plain atomic load.
    pub fn is_connected(&self) -> bool {
        self.stats.is_ready()
    }

    /// The latest [`Status`], for reading it and waiting on its transitions.
    pub fn status(&self) -> StatusWatch {
        StatusWatch::new(self.status.clone())
    }

    /// Every lifecycle event from now on. A receiver that falls more than 256 events behind is
    /// told how many it missed ([`RecvError::Lagged`](crate::RecvError::Lagged)).
    pub fn events(&self) -> Events {
        Events::new(self.events.subscribe())
    }

    /// Status and counters at this instant.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(&self.status.borrow(), &self.stats)
    }

    /// A further receiver of every data message, when
    /// [`ClientConfig::fan_out_capacity`] is set (`None` otherwise). Unlike the main
    /// [`Messages`] stream it does not slow the socket: a receiver that falls behind is told
    /// how many messages it missed ([`RecvError::Lagged`](crate::RecvError::Lagged)), never
    /// silently skipped. It has nothing to do with channel subscriptions
    /// ([`Client::subscribe_channel`]).
    pub fn fan_out(&self) -> Option<FanOut> {
        self.fan_out.as_ref().map(|f| FanOut::new(f.subscribe()))
    }

    /// Waits until the client is `Ready`.
    ///
    /// # Errors
    /// The client closed first: the permanent failure, or [`Error::Closed`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn ready(&self) -> Result<(), Error> {
        let mut status = self.status.clone();
        let outcome = status
            .wait_for(|s| s.state.is_ready() || s.state.is_closed())
            .await
            .map(|s| {
                if s.state.is_ready() {
                    Ok(())
                } else {
                    Err(s.error.clone().unwrap_or(Error::Closed))
                }
            });
        outcome.unwrap_or(Err(Error::Closed))
    }

    /// Waits until the client has closed.
    ///
    /// # Errors
    /// The permanent failure that ended it, if that is why it closed.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn closed(&self) -> Result<(), Error> {
        wait_closed(self.status.clone()).await
    }

    /// Closes with code 1000: writes what is queued (unless `drain_on_close` is off), sends
    /// the Close frame, waits for the server's Close up to `close_timeout`, and returns once
    /// the task has ended.
    ///
    /// # Errors
    /// The permanent failure, if the client had already failed.
    pub async fn close(&self) -> Result<(), Error> {
        self.close_with(CloseCode::NORMAL, "").await
    }

    /// Like [`Client::close`], with a chosen close code and reason.
    ///
    /// The reason must fit a control frame: at most 123 bytes of UTF-8. The code is always one
    /// an endpoint may send: [`CloseCode`] holds no other.
    ///
    /// # Errors
    /// [`Error::InvalidCloseFrame`] for a reason too long to send, before anything is done
    /// (the client stays open); otherwise as [`Client::close`].
    pub async fn close_with(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        check_reason(reason).map_err(Error::InvalidCloseFrame)?;
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.to_owned().into(),
        };
        request_close(
            &self.stats,
            self.commands.clone(),
            self.status.clone(),
            frame,
            self.drain_on_close,
        )
        .await
    }

    /// Adds `channel` to the runtime subscription set: subscribed now when `Ready`, and
    /// replayed after every reconnect (after the handshake, before queued messages).
    ///
    /// # Errors
    /// [`Error::Config`] when the builder got no [`ChannelFormat`], [`Error::Closed`] once the
    /// client is closed.
    pub async fn subscribe_channel(&self, channel: impl Into<String>) -> Result<(), Error> {
        self.channel_command(Command::Subscribe(channel.into()))
            .await
    }

    /// Removes `channel` from the runtime set, unsubscribing now when `Ready` and the format
    /// has an unsubscribe message.
    ///
    /// # Errors
    /// As [`Client::subscribe_channel`].
    pub async fn unsubscribe_channel(&self, channel: impl Into<String>) -> Result<(), Error> {
        self.channel_command(Command::Unsubscribe(channel.into()))
            .await
    }

    async fn channel_command(&self, command: Command) -> Result<(), Error> {
        if !self.has_channel_format {
            return Err(Error::Config(ConfigError::Missing("channel_format")));
        }
        self.commands.send(command).await.map_err(|_| Error::Closed)
    }

    /// Whether the client is on its way to closed: a close was asked for (by
    /// [`Client::close`], [`Client::close_with`] or the `Sink`'s close, from any handle) or
    /// the queue stopped taking messages, and the task has not ended yet. Sends fail with
    /// [`SendError::Closed`] from here on, while what was queued is still written (when
    /// `drain_on_close` is on) and received messages still arrive.
    pub fn is_closing(&self) -> bool {
        (self.stats.is_close_requested() || self.queue.is_closed()) && !self.is_closed()
    }

    /// Whether the client has closed for good: its task has ended (after a close, the last
    /// handle's drop, or a permanent failure), and nothing more will be sent or received.
    /// While the client is still draining and closing, this is `false` and
    /// [`Client::is_closing`] is `true`.
    pub fn is_closed(&self) -> bool {
        // A task that vanished without publishing `Closed` (its runtime went away) is closed too.
        self.status.borrow().state.is_closed() || self.status.has_changed().is_err()
    }
}

/// Marks the close as asked for, tells the supervisor, and waits for the task to end.
async fn request_close(
    stats: &Stats,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
    frame: CloseFrame,
    drain: bool,
) -> Result<(), Error> {
    stats.request_close();
    // A send error means the supervisor is already gone, which is what we want.
    let _ = commands.send(Command::Close { frame, drain }).await;
    wait_closed(status).await
}

/// Waits until the status says `Closed`; `Err` with the permanent failure that ended it.
async fn wait_closed(mut status: watch::Receiver<Status>) -> Result<(), Error> {
    let outcome = status
        .wait_for(|s| s.state.is_closed())
        .await
        .map(|s| s.error.clone());
    match outcome {
        Ok(Some(error)) => Err(error),
        // A vanished supervisor has nothing more to say: it is closed.
        Ok(None) | Err(_) => Ok(()),
    }
}

/// The longest Close reason: a control frame's 125 payload bytes, less the 2-byte code.
const MAX_CLOSE_REASON: usize = 123;

/// Whether a Close frame may carry `reason`.
fn check_reason(reason: &str) -> Result<(), CloseFrameError> {
    if reason.len() > MAX_CLOSE_REASON {
        return Err(CloseFrameError::ReasonTooLong(reason.len()));
    }
    Ok(())
}

/// Builds a [`Client`]; every setting is checked in [`ClientBuilder::build`] (which
/// [`ClientBuilder::spawn`] and [`ClientBuilder::connect`] call), which returns an error
/// instead of panicking.
///
/// Three ways to finish, after reqwest's and tokio's naming:
/// - [`connect`](ClientBuilder::connect)`.await`: start the client and wait until it is
///   `Ready` the first time (or failed for good);
/// - [`spawn`](ClientBuilder::spawn): start it in the background and return at once;
/// - [`build`](ClientBuilder::build): return it unstarted, with its [`Supervisor`] task to
///   await or spawn yourself.
pub struct ClientBuilder {
    endpoints: Vec<Result<Request, Error>>,
    factory: Option<RequestFactory>,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    config: ClientConfig,
    backoff: Option<Box<dyn Backoff>>,
    handshaker: Arc<dyn Handshaker>,
    classifier: Option<Classifier>,
    pub(crate) transport: TransportOptions,
    extensions: Vec<Arc<dyn Extension>>,
    channel_format: Option<ChannelFormat>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    fn new(endpoints: Vec<Result<Request, Error>>) -> Self {
        ClientBuilder {
            endpoints,
            factory: None,
            headers: Vec::new(),
            subprotocols: Vec::new(),
            config: ClientConfig::default(),
            backoff: None,
            handshaker: Arc::new(NoHandshake),
            classifier: None,
            transport: TransportOptions::default(),
            extensions: Vec::new(),
            channel_format: None,
        }
    }

    /// Replaces the whole configuration (for example with a preset).
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Edits the configuration in place.
    pub fn configure(mut self, edit: impl FnOnce(&mut ClientConfig)) -> Self {
        edit(&mut self.config);
        self
    }

    /// Adds a header to every upgrade request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol (`Sec-WebSocket-Protocol`); may be called several times.
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// Adds a further endpoint, tried after those before it (see
    /// [`Client::builder_with_endpoints`]); may be called several times.
    pub fn endpoint<R: IntoClientRequest>(mut self, request: R) -> Self {
        self.endpoints
            .push(request.into_client_request().map_err(Error::from_ws));
        self
    }

    /// Builds the upgrade request anew for every attempt, for token refresh or signed URLs.
    /// The factory gets the attempt number and the endpoint the attempt goes to (start from
    /// [`RequestContext::endpoint`] to keep the rotation); headers and subprotocols set on the
    /// builder are added to what it returns.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), resocket::Error> {
    /// let (client, messages) = resocket::Client::builder_with_endpoints([
    ///     "wss://a.example.com/ws",
    ///     "wss://b.example.com/ws",
    /// ])
    /// .request_factory(|ctx| {
    ///     let mut request = ctx.endpoint.clone();
    ///     let token = format!("Bearer fresh-token-{}", ctx.attempt);
    ///     request.headers_mut().insert("authorization", token.parse().unwrap());
    ///     Ok(request)
    /// })
    /// .spawn()?;
    /// # Ok(()) }
    /// ```
    pub fn request_factory<F>(mut self, factory: F) -> Self
    where
        F: Fn(RequestContext<'_>) -> Result<http::Request<()>, Error> + Send + Sync + 'static,
    {
        self.factory = Some(Arc::new(factory));
        self
    }

    /// Never connects again: the first disconnect (or failed connect) ends the client, with
    /// its reason as the error, and a server Close 1000 ends it cleanly. For one-shot clients
    /// and test agents; see [`ClientConfig::reconnect`].
    pub fn no_reconnect(mut self) -> Self {
        self.config.reconnect = false;
        self
    }

    /// Uses this backoff instead of the configured exponential one.
    pub fn backoff(mut self, backoff: impl Backoff) -> Self {
        self.backoff = Some(Box::new(backoff));
        self
    }

    /// Runs this handshake after every upgrade, before `Ready`.
    pub fn handshake(mut self, handshaker: impl Handshaker) -> Self {
        self.handshaker = Arc::new(handshaker);
        self
    }

    /// Registers an extension; extensions run in registration order and are fixed once built.
    pub fn extension(mut self, extension: impl Extension) -> Self {
        self.extensions.push(Arc::new(extension));
        self
    }

    /// How runtime channel subscriptions ([`Client::subscribe_channel`]) are written.
    pub fn channel_format(mut self, format: ChannelFormat) -> Self {
        self.channel_format = Some(format);
        self
    }

    /// Overrides the retry decision: `classify(error)` returns whether to retry. The default
    /// is [`Error::is_retryable`].
    pub fn retry_if(mut self, classify: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Self {
        self.classifier = Some(Arc::new(classify));
        self
    }

    /// Validates the settings, starts the client on the current tokio runtime, and waits
    /// until it is `Ready` for the first time.
    ///
    /// This is [`ClientBuilder::spawn`] followed by [`Client::ready`]. Retryable failures on
    /// the way are retried as configured; the wait ends with the first `Ready` or with the end
    /// of the client. Bound it with `tokio::time::timeout` to give up earlier (dropping the
    /// future drops the handle, which closes the client).
    ///
    /// # Errors
    /// As [`ClientBuilder::build`]; then what ended the client before it was ever `Ready`:
    /// a permanent failure, [`Error::RetriesExhausted`], the first failure under
    /// `exit_on_first_failure` or without reconnecting, or [`Error::Closed`].
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    ///
    /// # Cancel safety
    /// Not cancel safe: the client started here is closed when the future is dropped.
    pub async fn connect(self) -> Result<(Client, Messages), Error> {
        let (client, messages) = self.spawn()?;
        client.ready().await?;
        Ok((client, messages))
    }

    /// Validates the settings and starts the client on the current tokio runtime, without
    /// waiting for it to connect.
    ///
    /// Returns at once; the first connection is made in the background (use
    /// [`Client::ready`] to wait for it, or [`ClientBuilder::connect`] for both in one call).
    /// Messages sent before then wait in the queue.
    ///
    /// # Errors
    /// As [`ClientBuilder::build`].
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn spawn(self) -> Result<(Client, Messages), Error> {
        let (client, messages, supervisor) = self.build()?;
        tokio::spawn(supervisor.run());
        Ok((client, messages))
    }

    /// Validates the settings and builds the client without starting it: the handle, the
    /// message stream, and the [`Supervisor`] task, which does nothing until it is awaited (or
    /// spawned). Events are published from the first transition, so a receiver made with
    /// [`Client::events`] before the supervisor starts sees every one.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL in any endpoint (`http://`, no host), an empty endpoint
    /// list, an invalid header, a zero capacity, or a `wss://` URL in a build without TLS.
    pub fn build(self) -> Result<(Client, Messages, Supervisor), Error> {
        self.config.validate()?;
        let endpoints = check_endpoints(self.endpoints)?;
        let headers = parse_headers(&self.headers)?;
        let connector = connector_for(&self.transport, endpoints.tls, self.factory.is_some())?;
        let config = self.config;

        let stats = Arc::new(Stats::default());
        let (queue_tx, queue_rx) = queue::channel(
            config.queue_capacity,
            config.queue_max_bytes,
            config.queue_policy,
            stats.clone(),
        );
        let (inbound_tx, messages, fan_out) = inbound::channel(
            config.inbound_capacity,
            config.inbound_max_bytes,
            config.fan_out_capacity,
        );
        let (commands_tx, commands_rx) = mpsc::channel(8);
        let (status_tx, status_rx) = watch::channel(Status::default());
        let (events_tx, _) = broadcast::channel(256);
        let backoff = self
            .backoff
            .unwrap_or_else(|| Box::new(config.backoff.clone()));

        let client = Client {
            queue: queue_tx,
            commands: commands_tx,
            status: status_rx.clone(),
            events: events_tx.clone(),
            fan_out,
            stats: stats.clone(),
            has_channel_format: self.channel_format.is_some(),
            drain_on_close: config.drain_on_close,
            sink: SinkState::default(),
        };
        let extensions = Extensions::new(self.extensions, client.queue.clone(), stats.clone());
        let link = Link {
            factory: self.factory,
            headers,
            subprotocols: self.subprotocols,
            connector,
            handshaker: self.handshaker,
            classifier: self.classifier,
            config,
        };
        let pipes = Pipes::new(
            Requests::new(commands_rx, self.channel_format),
            queue::Outbox::new(queue_rx),
            Received::new(inbound_tx, stats.clone(), extensions.clone()),
            stats.clone(),
            extensions.clone(),
        );
        let publish = Publisher {
            status: status_tx,
            events: events_tx,
            stats,
            extensions,
        };
        Ok((
            client,
            messages.watching(status_rx),
            Supervisor(Lifecycle {
                link,
                pipes,
                publish,
                backoff,
                endpoints: Endpoints::new(endpoints.list),
                dial: Network,
            }),
        ))
    }
}

/// The checked endpoints, and whether any of them needs TLS.
struct CheckedEndpoints {
    list: Vec<Endpoint>,
    tls: bool,
}

/// Checks every endpoint's URL; an empty list is an error.
fn check_endpoints(requests: Vec<Result<Request, Error>>) -> Result<CheckedEndpoints, Error> {
    if requests.is_empty() {
        return Err(Error::Config(ConfigError::Missing("endpoints")));
    }
    let mut list = Vec::with_capacity(requests.len());
    let mut tls = false;
    for request in requests {
        let request = request?;
        tls |= Target::from_uri(request.uri())?.tls;
        list.push(Endpoint::new(request));
    }
    Ok(CheckedEndpoints { list, tls })
}

/// The connector for these endpoints. A request factory may return `wss://` URLs that no
/// endpoint has, so TLS is set up for it too, where the build has TLS; a plain `ws://` client
/// still builds without it.
fn connector_for(
    transport: &TransportOptions,
    tls: bool,
    has_factory: bool,
) -> Result<Connector, Error> {
    let connector = Connector::build(transport, tls || has_factory).or_else(|e| {
        if tls {
            Err(e)
        } else {
            Connector::build(transport, false)
        }
    })?;
    Ok(connector)
}

fn parse_headers(raw: &[(String, String)]) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    raw.iter()
        .map(|(name, value)| {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| ConfigError::InvalidHeader(name.clone()))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| ConfigError::InvalidHeader(name.to_string()))?;
            Ok((name, value))
        })
        .collect()
}

/// Everything the supervisor needs to (re)open the connection.
pub(crate) struct Link {
    pub(crate) config: ClientConfig,
    factory: Option<RequestFactory>,
    headers: Vec<(HeaderName, HeaderValue)>,
    subprotocols: Vec<String>,
    pub(crate) connector: Connector,
    pub(crate) handshaker: Arc<dyn Handshaker>,
    classifier: Option<Classifier>,
}

impl Link {
    pub(crate) fn should_retry(&self, error: &Error) -> bool {
        match &self.classifier {
            Some(classify) => classify(error),
            None => error.is_retryable(),
        }
    }

    /// The upgrade request for one attempt on `endpoint` (at `index`), with a fresh
    /// `Sec-WebSocket-Key`.
    pub(crate) fn request(
        &self,
        attempt: u32,
        index: usize,
        endpoint: &Endpoint,
    ) -> Result<Request, Error> {
        let mut request = match &self.factory {
            Some(factory) => {
                let custom = factory(RequestContext {
                    attempt,
                    endpoint: &endpoint.request,
                    index,
                })?;
                let mut fresh = custom
                    .uri()
                    .clone()
                    .into_client_request()
                    .map_err(Error::from_ws)?;
                for (name, value) in custom.headers() {
                    fresh.headers_mut().insert(name, value.clone());
                }
                fresh
            }
            None => endpoint.request.clone(),
        };
        let headers = request.headers_mut();
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_str(&generate_key()).expect("base64 is ascii"),
        );
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        if !self.subprotocols.is_empty() {
            let offered = self.subprotocols.join(", ");
            let value =
                HeaderValue::from_str(&offered).map_err(|_| ConfigError::InvalidHeader(offered))?;
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
        }
        crate::codec::add_offer(&self.config, request.headers_mut());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_longer_than_123_bytes_are_refused() {
        assert_eq!(check_reason(&"a".repeat(123)), Ok(()));
        // 62 two-byte characters: 124 bytes in 62 chars.
        assert_eq!(
            check_reason(&"é".repeat(62)),
            Err(CloseFrameError::ReasonTooLong(124))
        );
    }
}
