//! A stream whose first reads replay bytes already read from it: the request head the
//! listener read to choose between a WebSocket upgrade and plain HTTP. Works the same
//! over a plain socket and a TLS stream (which cannot be peeked at).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The largest request head judged: longer heads are judged on their first 8 KiB.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// `inner`, with `prefix` (from `start` on) served before anything read from it.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    prefix: Vec<u8>,
    start: usize,
    inner: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            start: 0,
            inner,
        }
    }
}

/// Reads from `stream` until the end of an HTTP request head (`\r\n\r\n`), [`MAX_HEAD`]
/// bytes, or EOF, and returns what was read (possibly more than the head: a body's
/// first bytes). `None`: the peer closed or failed before sending anything.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let searched_from = buf.len().saturating_sub(3);
        let room = MAX_HEAD - buf.len();
        let read = (&mut *stream).take(room as u64).read_buf(&mut buf).await;
        let Ok(n) = read else { return None };
        if n == 0 {
            return (!buf.is_empty()).then_some(buf);
        }
        let ended = buf[searched_from..].windows(4).any(|w| w == b"\r\n\r\n");
        if ended || buf.len() >= MAX_HEAD {
            return Some(buf);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start < this.prefix.len() {
            let rest = &this.prefix[this.start..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.start += n;
            if this.start == this.prefix.len() {
                // Replayed: free the buffer for the connection's lifetime.
                this.prefix = Vec::new();
                this.start = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
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
    async fn the_head_is_replayed_before_the_rest() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody")
            .await
            .unwrap();
        drop(client);
        let head = read_head(&mut server).await.expect("a head");
        assert!(head.starts_with(b"GET / HTTP/1.1\r\n"));
        let mut all = Vec::new();
        Rewind::new(head, server)
            .read_to_end(&mut all)
            .await
            .unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody");
    }

    #[tokio::test]
    async fn a_head_split_across_writes_is_read_whole() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move { read_head(&mut server).await });
        for part in [
            &b"GET / HTTP/1.1\r"[..],
            b"\nUpgrade: websocket\r\n",
            b"\r",
            b"\n",
        ] {
            client.write_all(part).await.unwrap();
            tokio::task::yield_now().await;
        }
        let head = reader.await.unwrap().expect("a head");
        assert!(head.ends_with(b"websocket\r\n\r\n"), "{head:?}");
    }

    #[tokio::test]
    async fn nothing_sent_is_none_and_an_endless_head_stops_at_the_cap() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert_eq!(read_head(&mut server).await, None);

        let (mut client, mut server) = tokio::io::duplex(MAX_HEAD * 2);
        client.write_all(&[b'a'; MAX_HEAD + 100]).await.unwrap();
        let head = read_head(&mut server).await.expect("a head");
        assert_eq!(head.len(), MAX_HEAD);
    }
}
