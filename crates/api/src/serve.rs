//! The connection loop: every accepted connection is admitted against the connection
//! limits, and given one deadline from its arrival for its TLS handshake and its first
//! request; after that (HTTP/1) each request's headers must be complete within the same
//! time — which also bounds a kept-alive connection's idleness —
//! and served over the protocol ALPN chose (HTTP/2 or HTTP/1.1). Plain HTTP (loopback
//! only) is HTTP/1.1, or HTTP/2 for a client that starts with its preface (prior
//! knowledge, `curl --http2-prior-knowledge`). An HTTP/2 connection carries up to 1,000
//! concurrent streams, as kube-apiserver allows (`--http2-max-streams-per-connection`):
//! a client's watches share one connection.
//!
//! ```text
//!   accept ─▶ gate (total, per address; over: closed at once) ─▶ first byte ≤ T
//!          ─▶ h2 (ALPN, or the preface on plain HTTP)
//!           │ h1: each request's headers ≤ T, idle keep-alive ≤ T
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::tls::{ConnInfo, identity_of};

/// Bounds on connections.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once, in total (0: unlimited).
    pub max: usize,
    /// Connections open at once from one address (0: unlimited).
    pub max_per_address: usize,
    /// Longest wait for a connection's first byte, for a request's headers once it has
    /// begun, and for the next request on a kept-alive HTTP/1.1 connection.
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max: 10_000,
            max_per_address: 1_000,
            header_timeout: Duration::from_secs(30),
        }
    }
}

/// What the loop needs of an accepted connection.
pub trait Peer: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Who is on the other end.
    fn conn_info(&self, remote: SocketAddr) -> ConnInfo;
    /// The protocol to speak.
    fn protocol(&self) -> Protocol;
}

impl Peer for TcpStream {
    fn conn_info(&self, remote: SocketAddr) -> ConnInfo {
        ConnInfo {
            remote,
            client: None,
        }
    }

    fn protocol(&self) -> Protocol {
        Protocol::Either
    }
}

impl Peer for TlsStream<TcpStream> {
    fn conn_info(&self, remote: SocketAddr) -> ConnInfo {
        let (_, connection) = self.get_ref();
        let client = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(identity_of)
            .map(Arc::new);
        ConnInfo { remote, client }
    }

    fn protocol(&self) -> Protocol {
        match self.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        }
    }
}

/// What a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (TLS without ALPN `h2`).
    Http1,
    /// HTTP/2 (ALPN `h2`).
    Http2,
    /// Plain HTTP: HTTP/2 if the client opens with its preface, else HTTP/1.1.
    Either,
}

/// Streams an HTTP/2 connection may carry at once (kube-apiserver's default).
const MAX_STREAMS: u32 = 1000;

/// Counts open connections, in total and per address.
struct Gate {
    total: Option<Arc<Semaphore>>,
    per_address: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A connection's place at the gate, given back when it closes.
struct Admitted {
    _total: Option<OwnedSemaphorePermit>,
    address: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("gate lock");
        if let Some(n) = open.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.address);
            }
        }
    }
}

impl Gate {
    fn new(limits: &ConnectionLimits) -> Self {
        Self {
            total: (limits.max > 0).then(|| Arc::new(Semaphore::new(limits.max))),
            per_address: limits.max_per_address,
            open: Arc::default(),
        }
    }

    /// A place for a connection from `address`, or `None` when a bound is reached.
    fn admit(&self, address: IpAddr) -> Option<Admitted> {
        let total = match &self.total {
            Some(s) => Some(s.clone().try_acquire_owned().ok()?),
            None => None,
        };
        let mut open = self.open.lock().expect("gate lock");
        let n = open.entry(address).or_default();
        if self.per_address > 0 && *n >= self.per_address {
            return None;
        }
        *n += 1;
        Some(Admitted {
            _total: total,
            address,
            open: self.open.clone(),
        })
    }
}

/// A connection whose reads fail (closing it) once its deadline passes before its first
/// request has reached the service: a client that sends nothing, or a byte and nothing
/// more (which hyper's protocol detection and HTTP/2 handshake would wait for forever).
struct FirstRequest<I> {
    io: I,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set when the first request reaches the service.
    arrived: Arc<AtomicBool>,
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstRequest<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = this.deadline.as_mut() else {
            return read;
        };
        if this.arrived.load(Ordering::Acquire) {
            this.deadline = None;
            return read;
        }
        if read.is_pending() && deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within the header timeout",
            )));
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FirstRequest<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The HTTP/1.1, HTTP/2 and either-way connection builders, shared by every connection.
struct Builders {
    h1: Builder<TokioExecutor>,
    h2: Builder<TokioExecutor>,
    either: Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &ConnectionLimits) -> Self {
        let configure = |mut builder: Builder<TokioExecutor>| {
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(MAX_STREAMS)
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .keep_alive_timeout(Duration::from_secs(20));
            builder
        };
        Self {
            h1: configure(Builder::new(TokioExecutor::new()).http1_only()),
            h2: configure(Builder::new(TokioExecutor::new()).http2_only()),
            either: configure(Builder::new(TokioExecutor::new())),
        }
    }
}

/// A response extension: the response is not sent. Over HTTP/1.1 the connection is closed
/// instead, as by a server that went away (the fleet simulator's unreachable clusters);
/// over HTTP/2 the stream is reset. Requests already answered (an open watch) go on.
#[derive(Clone, Copy, Debug)]
pub struct DropConnection;

/// What hyper is told in place of a [`DropConnection`] response: it closes the connection.
#[derive(Debug, thiserror::Error)]
#[error("closed without an answer")]
struct Dropped;

impl From<std::convert::Infallible> for Dropped {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// Serves `router` on `listener` (over TLS when given an acceptor) until `shutdown`
/// completes, then waits for the connections open to finish (as axum's graceful shutdown
/// does). A connection is admitted at the gate before anything else, its TLS handshake
/// included, and the handshake has the header timeout too: a client that connects and
/// says nothing holds a place at the gate for that long at most.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let gate = Gate::new(&limits);
    let builders = Arc::new(Builders::new(&limits));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // Serves one accepted connection.
    let serve_one = |tcp: TcpStream, remote: SocketAddr| {
        let Some(admitted) = gate.admit(remote.ip()) else {
            tracing::debug!(%remote, "connection refused: too many open");
            return;
        };
        // Watch events are small writes.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let (tls, router, builders) = (tls.clone(), router.clone(), builders.clone());
        let watcher = graceful.watcher();
        let deadline = tokio::time::Instant::now() + limits.header_timeout;
        tokio::spawn(async move {
            let ended = match tls {
                None => connection(tcp, remote, router, &builders, watcher, deadline).await,
                Some(acceptor) => {
                    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            connection(tls, remote, router, &builders, watcher, deadline).await
                        }
                        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
                        Err(_) => Err("TLS handshake timed out".to_string()),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%remote, error = %e, "connection ended");
            }
            drop(admitted);
        });
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((tcp, remote)) => serve_one(tcp, remote),
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Connections the kernel completed before the listener closes are served, not reset:
    // accepted until none is left (the listener is non-blocking), then it closes.
    match listener.into_std() {
        Ok(listener) => loop {
            match listener.accept() {
                Ok((tcp, remote)) => {
                    match tcp
                        .set_nonblocking(true)
                        .and_then(|()| TcpStream::from_std(tcp))
                    {
                        Ok(tcp) => serve_one(tcp, remote),
                        Err(e) => tracing::debug!(%remote, error = %e, "connection dropped"),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock: none left
            }
        },
        Err(e) => tracing::debug!(error = %e, "cannot drain the listener"),
    }
    graceful.shutdown().await;
    Ok(())
}

/// Serves one connection until it ends: its first request by `deadline`, then over the
/// protocol it speaks.
async fn connection<I: Peer>(
    io: I,
    remote: SocketAddr,
    router: Router,
    builders: &Builders,
    watcher: hyper_util::server::graceful::Watcher,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    let info = io.conn_info(remote);
    let builder = match io.protocol() {
        Protocol::Http1 => &builders.h1,
        Protocol::Http2 => &builders.h2,
        Protocol::Either => &builders.either,
    };
    let arrived = Arc::new(AtomicBool::new(false));
    let service = tower::ServiceBuilder::new()
        .map_result(
            |result: Result<axum::response::Response, std::convert::Infallible>| {
                let response = result.unwrap_or_else(|never| match never {});
                if response.extensions().get::<DropConnection>().is_some() {
                    return Err(Dropped);
                }
                Ok(response)
            },
        )
        .map_request({
            let arrived = arrived.clone();
            move |request: axum::http::Request<_>| {
                arrived.store(true, Ordering::Release);
                request
            }
        })
        .layer(axum::Extension(ConnectInfo(info)))
        .service(router);
    let io = TokioIo::new(FirstRequest {
        io,
        deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
        arrived,
    });
    watcher
        .watch(
            builder
                .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
                .into_owned(),
        )
        .await
        .map_err(|e| e.to_string())
}
