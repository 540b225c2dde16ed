//! A tiny HTTP server on 127.0.0.1 running a test-provided axum `Router`, for
//! behaviour a real registry cannot be made to show (tag pagination with `Link`
//! headers, 429 + `Retry-After`, 202 answers to cross-repository mounts…).

use axum::Router;
use tokio::sync::oneshot;

/// A running fake server; stops when dropped.
pub struct FakeServer {
    addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FakeServer {
    /// Serves `router`. Needs a Tokio runtime.
    pub async fn start(router: Router) -> FakeServer {
        FakeServer::start_with(|_| router).await
    }

    /// Serves the router built by `make` from the server's own base URL
    /// (`http://127.0.0.1:PORT`), for absolute URLs in answers.
    pub async fn start_with(make: impl FnOnce(&str) -> Router) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake server to 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake server local address");
        let router = make(&format!("http://{addr}"));
        let tx = super::serve_until_dropped(listener, router);
        FakeServer {
            addr,
            shutdown: Some(tx),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
