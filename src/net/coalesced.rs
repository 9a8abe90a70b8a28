//! Writes coalesced across a scheduler round, for the server's listeners and the load
//! generator. Owns no state beyond one connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// A connection whose first write after a flush waits one scheduler round.
///
/// HTTP/2 multiplexes many requests on a connection, and their replies tend to finish
/// together: a Raft batch answers hundreds of requests at once. Without the wait, each
/// finished reply wakes the connection's task, which tokio runs next, so every reply leaves
/// in a `writev` of its own. With it, the task goes to the back of the run queue, behind
/// the replies about to be queued, and sends them in one. On loopback a send also pays for
/// the receiver's TCP work, so under load this cut the server's write calls fourfold; an
/// idle connection pays one extra poll per write.
pub struct CoalescedWrites<S> {
    inner: S,
    /// Set once a write has yielded; cleared by the flush that ends the round.
    deferred: bool,
}

impl<S> CoalescedWrites<S> {
    pub fn new(inner: S) -> Self {
        CoalescedWrites {
            inner,
            deferred: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether this write waits a round (the task is already rescheduled).
    fn defer(&mut self, cx: &mut Context<'_>) -> bool {
        if self.deferred {
            return false;
        }
        self.deferred = true;
        // Woken inside its own poll, a tokio task is queued at the back, not run next.
        cx.waker().wake_by_ref();
        true
    }
}

impl<S: Connected> Connected for CoalescedWrites<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CoalescedWrites<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.defer(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.defer(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if flushed.is_ready() {
            this.deferred = false;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_pass_through_in_order() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut a = CoalescedWrites::new(a);
        for chunk in [&b"one "[..], b"two ", b"three"] {
            a.write_all(chunk).await.unwrap();
        }
        a.flush().await.unwrap();
        a.shutdown().await.unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"one two three");
    }

    #[tokio::test]
    async fn the_first_write_of_a_round_yields_once() {
        let (a, _b) = tokio::io::duplex(1 << 16);
        let mut a = CoalescedWrites::new(a);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut a).poll_write(&mut cx, b"x").is_pending());
        assert!(matches!(
            Pin::new(&mut a).poll_write(&mut cx, b"x"),
            Poll::Ready(Ok(1))
        ));
        assert!(Pin::new(&mut a).poll_flush(&mut cx).is_ready());
        assert!(Pin::new(&mut a).poll_write(&mut cx, b"x").is_pending());
    }

    /// Counts the writes that reach the inner stream.
    struct CountedWrites<S> {
        inner: S,
        writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for CountedWrites<S> {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let written = Pin::new(&mut this.inner).poll_write(cx, buf);
            if written.is_ready() {
                this.writes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            written
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
        }
    }

    /// Requests queued together leave together, bodies of a few kilobytes included (the
    /// patched h2 copies them into its buffer instead of writing each one on its own).
    #[tokio::test(flavor = "current_thread")]
    async fn request_bodies_of_a_few_kilobytes_share_writes() {
        const REQUESTS: usize = 20;
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (client_reads, client_writes) = tokio::io::split(client_io);
        let client_io = tokio::io::join(
            client_reads,
            CountedWrites {
                inner: client_writes,
                writes: writes.clone(),
            },
        );
        let server = tokio::spawn(async move {
            let mut server = h2::server::handshake(server_io).await.unwrap();
            let mut bodies = 0;
            while let Some(request) = server.accept().await {
                let (request, _respond) = request.unwrap();
                let mut body = request.into_body();
                while let Some(chunk) = body.data().await {
                    bodies += chunk.unwrap().len();
                }
                if bodies == REQUESTS * 2000 {
                    return bodies;
                }
            }
            bodies
        });
        let (send, connection) = h2::client::handshake(client_io).await.unwrap();
        let mut send = send.ready().await.unwrap();
        let mut streams = Vec::new();
        for _ in 0..REQUESTS {
            let head = http::Request::post("http://cairn/x").body(()).unwrap();
            let (response, mut body) = send.send_request(head, false).unwrap();
            body.send_data(bytes::Bytes::from(vec![7u8; 2000]), true)
                .unwrap();
            streams.push((response, body));
        }
        let before = writes.load(std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(connection);
        assert_eq!(server.await.unwrap(), REQUESTS * 2000);
        let after = writes.load(std::sync::atomic::Ordering::Relaxed);
        // 20 chained bodies would take at least 20 writes.
        assert!(
            after - before <= 4,
            "{} writes for {REQUESTS} requests",
            after - before
        );
    }
}
