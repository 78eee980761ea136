//! The accept loop: hyper with a header-read timeout, a request-head size limit and graceful
//! shutdown. `axum::serve` has neither limit, and a connection that never sends a byte is not
//! covered by hyper's header timeout, hence the first-byte deadline below.
//!
//! HTTP/1.1 only. hyper's HTTP/2 server has no head deadline: an h2c connection that sent
//! only the preface, or a HEADERS frame without END_HEADERS, stayed open past
//! `http.header_read_timeout`. Tessera sits behind a TLS-terminating proxy, which speaks
//! HTTP/2 to browsers and HTTP/1.1 to its upstream; a prior-knowledge h2c preface is answered
//! as a malformed HTTP/1 request and the connection closed.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::HttpSettings;

/// Serves `router` on `listener` until `shutdown` resolves, then drains in-flight requests,
/// and the router's writes that outlived their connections (`writes`; `guard::NO_WRITES` for
/// a router without the guard).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    writes: &'static crate::http::guard::Writes,
    cfg: &HttpSettings,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        // A hard cap on what one connection may buffer; heads between `max_header_bytes` and
        // this are refused by `guard` with the contract's JSON 431, larger ones by hyper.
        .max_buf_size(cfg.max_header_bytes.saturating_mul(4).max(64 * 1024))
        // Likewise for the number of header fields (hyper's default, 100, answers a bare 431
        // to a small head with many fields): `guard` refuses more than MAX_HEADER_FIELDS.
        .max_headers(4 * crate::http::guard::MAX_HEADER_FIELDS);
    let first_byte = cfg.header_read_timeout;
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let builder = builder.clone();
                let router = router.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    if tokio::time::timeout(first_byte, stream.peek(&mut [0u8; 1])).await.is_err() {
                        return;
                    }
                    let svc = router.map_request(move |mut r: axum::http::Request<Incoming>| {
                        r.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                        r
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
                    let _ = watcher.watch(conn.into_owned()).await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    // The connections first, then the writes that outlived theirs (answered 503, or their
    // client hung up): both within the one grace period.
    let drained = async {
        graceful.shutdown().await;
        writes.finished().await;
    };
    if tokio::time::timeout(cfg.shutdown_grace, drained)
        .await
        .is_err()
    {
        tracing::warn!("shutdown: some connections or writes did not finish in time");
    }
}
