//! The HTTP endpoint of `serve` (`/metrics`, `/healthz`, `/readyz`), served
//! with hyper directly so that clients cannot exhaust the daemon nor shut
//! the health probes out:
//!
//! - at most [`MAX_CONNECTIONS`] connections are open at once, so idle
//!   sockets can never eat the file descriptors that runs and reloads need;
//! - when that many are open, a new connection makes room by closing a
//!   connection that is not serving a request (idle, half-open or still
//!   sending its headers): the oldest such connection of the peer address
//!   that holds the most connections. Only when every open connection is
//!   serving a request is the new one refused. Either way the closed
//!   connection counts in `regmirror_http_connections_rejected_total`. A
//!   flood of idle or slow clients therefore closes its own connections
//!   first: the kubelet's probes and Prometheus' scrapes, which connect and
//!   ask at once, are answered (tested with 128 flooding connections);
//! - a client must send its request headers within [`HEADER_READ_TIMEOUT`];
//! - a connection lives at most [`CONNECTION_LIFETIME`], idle or not
//!   (scrapers reconnect; every answer here is small and immediate); at
//!   that age it is closed gracefully: a request in flight is answered
//!   first.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// Most connections open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// One open connection, as the accept loop sees it.
struct Open {
    id: u64,
    /// The peer's address.
    peer: IpAddr,
    /// True while a request of it is being served.
    busy: Arc<AtomicBool>,
    /// Cancelled to close it.
    close: CancellationToken,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Table {
    next_id: u64,
    open: VecDeque<Open>,
}

impl Table {
    /// Make room for one more connection under `max`: close the oldest one
    /// not serving a request if needed. False when every one is busy.
    fn make_room(&mut self, max: usize) -> bool {
        if self.open.len() < max {
            return true;
        }
        let held = |peer: IpAddr| self.open.iter().filter(|c| c.peer == peer).count();
        // The oldest idle connection of the peer holding the most (the
        // first of the maximal ones: `max_by_key` keeps the last).
        let Some((i, _)) = self
            .open
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.busy.load(Ordering::SeqCst))
            .rev()
            .max_by_key(|(_, c)| held(c.peer))
        else {
            return false;
        };
        if let Some(victim) = self.open.remove(i) {
            victim.close.cancel();
        }
        metrics::HTTP_CONNECTIONS_REJECTED.inc();
        true
    }

    /// Register a new connection: its id, busy flag and close token.
    fn add(&mut self, peer: IpAddr) -> (u64, Arc<AtomicBool>, CancellationToken) {
        self.next_id += 1;
        let open = Open {
            id: self.next_id,
            peer,
            busy: Arc::new(AtomicBool::new(false)),
            close: CancellationToken::new(),
        };
        let handles = (open.id, open.busy.clone(), open.close.clone());
        self.open.push_back(open);
        handles
    }

    fn remove(&mut self, id: u64) {
        self.open.retain(|c| c.id != id);
    }
}

/// Serve `app` on `listener` until `stop` is cancelled.
pub(super) async fn serve(listener: TcpListener, app: Router, stop: CancellationToken) {
    let table = Arc::new(Mutex::new(Table::default()));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => (stream, peer.ip()),
            Err(e) => {
                // Out of file descriptors or a transient accept failure:
                // back off instead of spinning.
                tracing::warn!(error = %e, "accepting a connection on the metrics endpoint failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (id, busy, close) = {
            let mut t = table.lock().unwrap_or_else(PoisonError::into_inner);
            if !t.make_room(MAX_CONNECTIONS) {
                metrics::HTTP_CONNECTIONS_REJECTED.inc();
                drop(stream);
                continue;
            }
            t.add(peer)
        };
        let service = marked(TowerToHyperService::new(app.clone()), busy);
        let stop = stop.clone();
        let table = table.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let expired = tokio::select! {
                _ = conn.as_mut() => false,
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => true,
                _ = close.cancelled() => false,
                _ = stop.cancelled() => false,
            };
            if expired {
                // Finish the request in flight (answered with
                // `Connection: close`) rather than cut it.
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(HEADER_READ_TIMEOUT, conn).await;
            }
            table
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(id);
        });
    }
}

/// A service that sets `busy` while `inner` serves a request.
#[derive(Clone)]
struct Marked<S> {
    inner: S,
    busy: Arc<AtomicBool>,
}

fn marked<S>(inner: S, busy: Arc<AtomicBool>) -> Marked<S> {
    Marked { inner, busy }
}

impl<S, R> hyper::service::Service<R> for Marked<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: R) -> Self::Future {
        let flag = Busy::set(self.busy.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let _flag = flag;
            fut.await
        })
    }
}

/// Sets a busy flag while it lives.
struct Busy(Arc<AtomicBool>);

impl Busy {
    fn set(flag: Arc<AtomicBool>) -> Busy {
        flag.store(true, Ordering::SeqCst);
        Busy(flag)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_full_table_closes_its_oldest_idle_connection_never_a_busy_one() {
        let mut t = Table::default();
        let (_, busy1, close1) = t.add(ip(1));
        let (_, _, close2) = t.add(ip(1));
        let (_, _, close3) = t.add(ip(1));
        busy1.store(true, Ordering::SeqCst);
        assert!(t.make_room(3));
        assert!(!close1.is_cancelled(), "a busy connection stays");
        assert!(close2.is_cancelled(), "the oldest idle one is closed");
        assert!(!close3.is_cancelled());
        let (_, busy4, _) = t.add(ip(1));
        busy4.store(true, Ordering::SeqCst);
        assert!(t.make_room(3));
        assert!(close3.is_cancelled());
        let (_, busy5, _) = t.add(ip(1));
        busy5.store(true, Ordering::SeqCst);
        assert!(!t.make_room(3), "every connection is busy: refuse");
        assert!(t.make_room(4));
    }

    #[test]
    fn the_peer_holding_the_most_connections_loses_one_first() {
        let mut t = Table::default();
        let (_, _, probe) = t.add(ip(9));
        let flood: Vec<_> = (0..3).map(|_| t.add(ip(1)).2).collect();
        assert!(t.make_room(4));
        assert!(!probe.is_cancelled(), "an older lone connection stays");
        assert!(flood[0].is_cancelled(), "the flood's oldest goes");
        assert!(!flood[1].is_cancelled());
    }
}
