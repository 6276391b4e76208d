//! What the handles ask of the supervisor, and the state those requests leave behind: the
//! runtime channel set and a close asked for before a connection could carry it.
//!
//! [`Requests`] is the only owner of the command receiver, the channel set and the deferred
//! close. The supervisor reads it while not `Ready` and lends it to the live connection while
//! `Ready`; both see the same [`Ask`]s, so a close is honoured in every state.

use std::task::{Context, Poll};

use tokio::{sync::mpsc, time::Instant};

use crate::{connection::normal_close, handshake::ChannelFormat, CloseFrame, Message};

/// What handles send the supervisor.
#[derive(Debug)]
pub(crate) enum Command {
    /// Close with this frame, writing what is queued first when `drain` is set.
    Close { frame: CloseFrame, drain: bool },
    /// Add a channel to the runtime set (and subscribe now, when `Ready`).
    Subscribe(String),
    /// Remove a channel from the runtime set (and unsubscribe now, when `Ready`).
    Unsubscribe(String),
}

/// What a request means for whoever holds the socket.
#[derive(Debug)]
pub(crate) enum Ask {
    /// Close with this frame, draining the queue first when `drain` is set. Also what the
    /// drop of the last handle asks.
    Close { frame: CloseFrame, drain: bool },
    /// The channel set changed: these messages say so on the wire, when connected (the next
    /// connection replays the whole set anyway).
    Send(Vec<Message>),
}

/// The supervisor's end of the command channel, and the state the commands change.
pub(crate) struct Requests {
    commands: mpsc::Receiver<Command>,
    /// Set once every handle is gone.
    handles_gone: bool,
    channels: Channels,
    /// A draining close asked for while not `Ready`: the next connection writes the backlog,
    /// then closes with this frame, unless the deadline passes first.
    deferred_close: Option<(CloseFrame, Instant)>,
}

impl Requests {
    pub(crate) fn new(commands: mpsc::Receiver<Command>, format: Option<ChannelFormat>) -> Self {
        Requests {
            commands,
            handles_gone: false,
            channels: Channels {
                format,
                active: Vec::new(),
            },
            deferred_close: None,
        }
    }

    /// The next request. Once every handle is gone, that is a close (with `drain_on_close`),
    /// and it stays so: like a closed channel, it is ready every time it is asked.
    ///
    /// # Cancel safety
    /// Cancel safe: a request is only taken when it is returned.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>, drain_on_close: bool) -> Poll<Ask> {
        if !self.handles_gone {
            match std::task::ready!(self.commands.poll_recv(cx)) {
                Some(Command::Close { frame, drain }) => {
                    return Poll::Ready(Ask::Close { frame, drain })
                }
                Some(other) => return Poll::Ready(Ask::Send(self.channels.apply(&other))),
                None => self.handles_gone = true,
            }
        }
        Poll::Ready(Ask::Close {
            frame: normal_close(),
            drain: drain_on_close,
        })
    }

    /// Whether every handle is gone: nothing but that close can come any more.
    pub(crate) fn handles_gone(&self) -> bool {
        self.handles_gone
    }

    /// Waits for the next request; as [`Requests::poll_next`].
    pub(crate) async fn next(&mut self, drain_on_close: bool) -> Ask {
        std::future::poll_fn(|cx| self.poll_next(cx, drain_on_close)).await
    }

    /// Keeps a draining close for the next connection, due by `deadline`.
    pub(crate) fn defer_close(&mut self, frame: CloseFrame, deadline: Instant) {
        self.deferred_close = Some((frame, deadline));
    }

    /// Whether a close is waiting for a connection to carry it.
    pub(crate) fn has_deferred_close(&self) -> bool {
        self.deferred_close.is_some()
    }

    /// When the deferred close gives up on the backlog, if one is waiting.
    pub(crate) fn deferred_close_deadline(&self) -> Option<Instant> {
        self.deferred_close.as_ref().map(|(_, deadline)| *deadline)
    }

    /// Hands the deferred close to the connection that will carry it.
    pub(crate) fn take_deferred_close(&mut self) -> Option<(CloseFrame, Instant)> {
        self.deferred_close.take()
    }

    /// What a new connection replays after the user's handshake: the format and the
    /// channels subscribed now. `None` when there is nothing to replay.
    pub(crate) fn replay(&self) -> Option<(ChannelFormat, Vec<String>)> {
        let format = self.channels.format.clone()?;
        (!self.channels.active.is_empty()).then(|| (format, self.channels.active.clone()))
    }

    /// The subscribe messages for channels added while the handshake replayed `replayed`:
    /// recorded, but not on the wire yet.
    pub(crate) fn missed_since(&self, replayed: &[String]) -> Vec<Message> {
        let Some(format) = &self.channels.format else {
            return Vec::new();
        };
        let missed: Vec<String> = self
            .channels
            .active
            .iter()
            .filter(|c| !replayed.contains(c))
            .cloned()
            .collect();
        format.subscribe_messages(&missed)
    }
}

/// The runtime subscription set, replayed after every reconnect.
#[derive(Default)]
struct Channels {
    format: Option<ChannelFormat>,
    active: Vec<String>,
}

impl Channels {
    /// Applies a command to the set; returns the messages that say so on the wire.
    fn apply(&mut self, command: &Command) -> Vec<Message> {
        let Some(format) = &self.format else {
            return Vec::new();
        };
        match command {
            Command::Subscribe(channel) if !self.active.contains(channel) => {
                self.active.push(channel.clone());
                format.subscribe_messages(std::slice::from_ref(channel))
            }
            Command::Unsubscribe(channel) if self.active.contains(channel) => {
                self.active.retain(|c| c != channel);
                format.unsubscribe_message(channel).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }
}
