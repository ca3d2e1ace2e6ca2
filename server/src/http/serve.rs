//! Serving the router on the listener: `axum::serve`'s loop, with one difference that matters to
//! every salon. `axum::serve` gives hyper no timer, so hyper's limit on reading a request head
//! (`header_read_timeout`, 30 s by default) never ran: a connection that started a request and
//! never finished it — or sent nothing, or sat idle between keep-alive requests — was held for as
//! long as the client liked, and enough of them take every file descriptor, and with them every
//! salon's webhooks and pages. Here each connection is served by hyper's HTTP/1.1 server with
//! tokio's timer and `HTTP_HEADER_TIMEOUT_MS`; everything else is as `axum::serve` does it (the
//! peer's address as `ConnectInfo`, upgrades, graceful shutdown that finishes the requests under
//! way). The deployment's nginx keeps its idle upstream connections for less than that
//! (`deploy/nginx`: `keepalive_timeout 20s`), so it never sends a request on a connection the
//! app is closing.
//!
//! And one more: an answer given before the request's body was read to its end says
//! `Connection: close` ([`Watched`]). hyper closes such a connection after the answer (the rest
//! of the body would be read as the next request), but it writes the answer's head before it
//! notices the body was dropped, so the head said nothing and a client sent its next request
//! on a connection already closing — that request got no answer at all. An entity webhook with a
//! wrong secret (refused before its body is read), a too-large body, a refusal by a limit: a
//! pooled client such as YClients' learns from the head that the connection ends here.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use bytes::Bytes;
use futures::FutureExt;
use http::header::{HeaderValue, CONNECTION};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tower::ServiceExt;

/// Serves `router` on `listener` until `signal` resolves, then stops accepting and waits for the
/// connections under way to finish their requests (each is told to close after its current one).
pub async fn serve<L>(
    mut listener: L,
    router: axum::Router,
    header_read_timeout: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
) where
    L: Listener<Addr = SocketAddr>,
{
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        signal.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = signal_tx.closed() => break,
        };
        let router = router.clone();
        let service = tower::service_fn(move |request: http::Request<Incoming>| {
            let (parts, body) = request.into_parts();
            let body = Watched::new(body);
            let read = Arc::clone(&body.read);
            let mut request = http::Request::from_parts(parts, Body::new(body));
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request).map(move |answered| {
                answered.map(|mut response| {
                    if !read.load(Ordering::Acquire) {
                        response
                            .headers_mut()
                            .insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                    response
                })
            })
        });
        let service = TowerToHyperService::new(service);
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let mut connection = pin!(builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades());
            let mut signalled = pin!(signal_tx.closed().fuse());
            loop {
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(e) = served {
                            tracing::trace!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = &mut signalled => connection.as_mut().graceful_shutdown(),
                }
            }
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

/// A request's body that notes when it has been read to its end (or never had anything to read).
struct Watched {
    inner: Incoming,
    read: Arc<AtomicBool>,
}

impl Watched {
    fn new(inner: Incoming) -> Self {
        let read = Arc::new(AtomicBool::new(inner.is_end_stream()));
        Self { inner, read }
    }
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
