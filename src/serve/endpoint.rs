//! The HTTP endpoint of `serve` (`/metrics`, `/healthz`, `/readyz`), served
//! with hyper directly so that clients cannot exhaust the daemon:
//!
//! - at most [`MAX_CONNECTIONS`] connections are open at once; beyond that a
//!   new connection is closed at once (and counted in
//!   `regmirror_http_connections_rejected_total`), so idle sockets can never
//!   eat the process's file descriptors that runs and reloads need;
//! - a client must send its request headers within [`HEADER_READ_TIMEOUT`];
//! - a connection lives at most [`CONNECTION_LIFETIME`], idle or not
//!   (scrapers reconnect; every answer here is small and immediate).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// Most connections open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// Serve `app` on `listener` until `stop` is cancelled.
pub(super) async fn serve(listener: TcpListener, app: Router, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors or a transient accept failure:
                // back off instead of spinning.
                tracing::warn!(error = %e, "accepting a connection on the metrics endpoint failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::HTTP_CONNECTIONS_REJECTED.inc();
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_LIFETIME, conn) => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}
