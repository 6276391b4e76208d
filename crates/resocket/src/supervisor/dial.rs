//! The seam under the supervisor: how one attempt gets its byte stream.
//!
//! The supervisor asks a [`Dial`] for a fresh stream on every attempt, then runs the same
//! upgrade, handshake and connection code on it, whatever it is. [`Network`] is the real
//! path (TCP, a proxy tunnel, TLS); tests plug in an in-memory pipe. The stream type is a
//! generic parameter all the way down to the codec, so the real path pays nothing for it.

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    client::Link,
    transport::{Socket, Target},
    Error,
};

/// Opens the byte stream for one attempt, before the WebSocket upgrade.
pub(crate) trait Dial: Send + Sync + 'static {
    /// The stream the upgrade, the handshake and the connection run on.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Opens a stream to `target`, with the link's transport settings.
    fn dial(
        &self,
        link: &Link,
        target: &Target,
    ) -> impl Future<Output = Result<Self::Io, Error>> + Send;
}

/// The real transport: TCP to the server or its proxy, then TLS where the target asks for it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Network;

impl Dial for Network {
    type Io = Socket;

    fn dial(
        &self,
        link: &Link,
        target: &Target,
    ) -> impl Future<Output = Result<Socket, Error>> + Send {
        link.connector.connect(target, &link.config)
    }
}
