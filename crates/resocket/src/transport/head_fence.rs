//! The reader the HTTP upgrade runs on: it hands tungstenite the response head and not a byte
//! more.
//!
//! A server may send its first frames in the same packet as its `101` response. tungstenite's
//! handshake reads in 4 KiB chunks and keeps whatever came after the head in its own buffer,
//! for its own frame reader; resocket reads frames with its own codec, so those bytes must not
//! go into tungstenite. [`HeadFence`] reads ahead into a buffer of its own, serves reads only up
//! to the blank line that ends the head, and gives the rest to the codec
//! ([`HeadFence::into_rest`]). A refused upgrade's body comes from there too.

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much one read from the socket takes while the head is read.
const CHUNK: usize = 4 << 10;

/// The end of an HTTP head.
const BLANK_LINE: &[u8; 4] = b"\r\n\r\n";

/// A borrowed socket whose reads stop at the end of the HTTP response head.
#[derive(Debug)]
pub(crate) struct HeadFence<'a, S> {
    inner: &'a mut S,
    buf: Vec<u8>,
    /// `buf[pos..filled]` is read from the socket but not yet by the caller.
    pos: usize,
    filled: usize,
    /// How many bytes of [`BLANK_LINE`] the bytes served so far end with.
    matched: usize,
}

impl<'a, S> HeadFence<'a, S> {
    pub(crate) fn new(inner: &'a mut S) -> HeadFence<'a, S> {
        HeadFence {
            inner,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            matched: 0,
        }
    }

    /// The bytes read past the head: the first frames, or a refused upgrade's body.
    pub(crate) fn into_rest(mut self) -> Vec<u8> {
        self.buf.truncate(self.filled);
        self.buf.drain(..self.pos);
        self.buf
    }
}

/// How many of `bytes` belong to the head, advancing the blank-line match over them.
fn head_part(matched: &mut usize, bytes: &[u8]) -> usize {
    for (i, &byte) in bytes.iter().enumerate() {
        if *matched == BLANK_LINE.len() {
            return i;
        }
        *matched = if byte == BLANK_LINE[*matched] {
            *matched + 1
        } else {
            usize::from(byte == b'\r')
        };
    }
    bytes.len()
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadFence<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.matched == BLANK_LINE.len() {
            // The head is complete and tungstenite has it all: it reads no further. Should it
            // ever, it sees the end of the stream rather than frames it must not have.
            return Poll::Ready(Ok(()));
        }
        if this.pos == this.filled {
            if this.buf.is_empty() {
                this.buf = vec![0; CHUNK];
            }
            let mut refill = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut *this.inner).poll_read(cx, &mut refill))?;
            // Zero bytes is the end of the stream, and the caller sees it as such below.
            this.filled = refill.filled().len();
            this.pos = 0;
        }
        let limit = out.remaining().min(this.filled - this.pos);
        let available = &this.buf[this.pos..this.pos + limit];
        let n = head_part(&mut this.matched, available);
        out.put_slice(&available[..n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadFence<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn reads_stop_at_the_blank_line_and_the_rest_is_kept() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let frames = b"\x82\x03abc\x81\x02hi";
        // Byte by byte too: the blank line may span reads.
        for chunk in [1usize, 3, 1 << 12] {
            let (mut far, mut near) = tokio::io::duplex(1 << 16);
            far.write_all(&[&head[..], &frames[..]].concat())
                .await
                .unwrap();
            let mut fence = HeadFence::new(&mut near);
            let mut got = Vec::new();
            loop {
                let mut buf = vec![0; chunk];
                let n = fence.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, head, "chunk {chunk}");
            let mut rest = fence.into_rest();
            // What the first refill did not take is still in the socket.
            drop(far);
            near.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, frames, "chunk {chunk}");
        }
    }
}
