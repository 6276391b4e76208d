//! A read-ahead buffer between the socket and tungstenite, for small reads only.
//!
//! tungstenite reads into the free capacity of its read buffer, and once messages have been
//! split off that buffer, `BytesMut::reserve` grants it just the one frame it asks room for. A
//! reader that keeps up with the server then made a `recv` system call for every frame or two
//! (measured: 262 000 calls for 525 000 messages of 1 KiB, against 5 500 for the same burst
//! through this buffer). [`ReadAhead`] serves such small reads from one large read.
//!
//! Large reads go straight to the socket instead: copying a 16 KiB frame through a buffer
//! costs more than the system call it saves (measured: 16 KiB receive fell to half with
//! `tokio::io::BufReader`, which only bypasses reads at least as large as its whole buffer).
//!
//! The buffer adapts, as hyper's read buffer does: it starts at 4 KiB, grows fourfold whenever
//! one read fills it (a burst), up to 64 KiB, and goes back to 4 KiB after a few reads that
//! filled only a sliver of it. An idle connection holds 4 KiB, not 64.

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The buffer's smallest and largest size.
const MIN: usize = 4 << 10;
const MAX: usize = 64 << 10;

/// This many refills in a row that took less than `MIN / 4` shrink the buffer back to `MIN`.
const SMALL_REFILLS_TO_SHRINK: u8 = 8;

/// Reads asking for at least this much go straight to the socket when the buffer is empty.
const DIRECT_FROM: usize = 8 << 10;

/// A stream whose small reads are served from a buffer; writes pass straight through.
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    buf: Vec<u8>,
    /// `buf[pos..filled]` is read from the socket but not yet by the caller.
    pos: usize,
    filled: usize,
    /// Refills in a row that took less than `MIN / 4`.
    small_refills: u8,
}

impl<S> ReadAhead<S> {
    pub(crate) fn new(inner: S) -> ReadAhead<S> {
        ReadAhead {
            inner,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            small_refills: 0,
        }
    }

    /// Sizes the (empty) buffer for the next refill from how full the last ones came back.
    fn resize_for_refill(&mut self) {
        let len = self.buf.len();
        if len == 0 || (self.small_refills >= SMALL_REFILLS_TO_SHRINK && len > MIN) {
            // A fresh allocation: shrinking in place would keep the zeroed pages resident.
            self.buf = vec![0; MIN];
            self.small_refills = 0;
        } else if self.filled == len && len < MAX {
            self.buf.resize((len * 4).min(MAX), 0);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.filled {
            if out.remaining() >= DIRECT_FROM {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            this.resize_for_refill();
            let mut refill = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut refill))?;
            // Zero bytes is the end of the stream, and the caller sees it as such below.
            this.filled = refill.filled().len();
            this.pos = 0;
            if this.filled < MIN / 4 {
                this.small_refills = this.small_refills.saturating_add(1);
            } else {
                this.small_refills = 0;
            }
        }
        let n = out.remaining().min(this.filled - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn small_and_large_reads_see_the_stream_in_order() {
        let (mut far, near) = tokio::io::duplex(256 << 10);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        far.write_all(&data).await.unwrap();
        drop(far);
        let mut stream = ReadAhead::new(near);
        let mut got = Vec::new();
        // Alternate small reads (buffered) and large ones (direct when the buffer is empty).
        for size in [1usize, 100, 1028, 20_000, 3, 70_000].iter().cycle() {
            let mut chunk = vec![0; *size];
            let n = stream.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn the_buffer_grows_for_a_burst_and_shrinks_when_quiet() {
        let (mut far, near) = tokio::io::duplex(256 << 10);
        let mut stream = ReadAhead::new(near);
        let mut chunk = [0u8; 100];
        far.write_all(&vec![7u8; 200 << 10]).await.unwrap();
        let mut left = 200 << 10;
        while left > 0 {
            left -= stream.read(&mut chunk).await.unwrap();
        }
        assert_eq!(stream.buf.len(), MAX, "a burst grows the buffer");
        for _ in 0..=SMALL_REFILLS_TO_SHRINK {
            far.write_all(&[1u8; 10]).await.unwrap();
            assert_eq!(stream.read(&mut chunk).await.unwrap(), 10);
        }
        assert_eq!(stream.buf.len(), MIN, "small reads shrink it back");
    }
}
