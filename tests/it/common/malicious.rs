//! A malicious registry for attack tests: an axum server on 127.0.0.1 that
//! records every request (method, path and query, every header) and lets a
//! test answer each one itself, forward it to a real registry behind it, or
//! forward it and then tamper with the answer's headers.
//!
//! A real registry cannot be made malicious (it never lists `../` tags,
//! redirects to other origins, trickles bodies or rewrites digests), so the
//! attacks are played by this server; wherever the attack concerns what
//! reaches a target, a real `docker-registry` sits behind it and its own
//! access log is the witness.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::oneshot;

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    /// Every header, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body, for requests that had one.
    pub body: Bytes,
}

impl Recorded {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or(&self.uri)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What to do with one request.
pub enum Answer {
    /// Answer this, without contacting the upstream.
    Respond(Response),
    /// Forward to the upstream (404 when there is none).
    Forward,
    /// Forward, then change the answer's headers.
    ForwardThen(Box<dyn FnOnce(&mut HeaderMap) + Send>),
    /// Never answer: the connection stays open and silent.
    Silent,
}

type Handler = Arc<dyn Fn(&Recorded) -> Answer + Send + Sync>;

struct St {
    upstream: Option<String>,
    self_base: String,
    client: reqwest::Client,
    handler: Handler,
    log: Mutex<Vec<Recorded>>,
}

impl St {
    fn new(
        upstream: Option<&str>,
        self_base: String,
        handler: Box<dyn Fn(&Recorded) -> Answer + Send + Sync>,
    ) -> Arc<St> {
        Arc::new(St {
            upstream: upstream.map(|u| u.trim_end_matches('/').to_string()),
            self_base,
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("building the malicious server's upstream client"),
            handler: Arc::from(handler),
            log: Mutex::new(Vec::new()),
        })
    }
}

/// A running malicious server; stops when dropped.
pub struct MaliciousServer {
    state: Arc<St>,
    addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl MaliciousServer {
    /// Starts a server whose handler `make` builds from the server's own
    /// base URL (`http://127.0.0.1:PORT`). `upstream`: a real registry's base
    /// URL that [`Answer::Forward`] sends requests to.
    pub async fn start(
        upstream: Option<&str>,
        make: impl FnOnce(&str) -> Box<dyn Fn(&Recorded) -> Answer + Send + Sync>,
    ) -> MaliciousServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the malicious server to 127.0.0.1:0");
        let addr = listener.local_addr().expect("malicious server address");
        let self_base = format!("http://{addr}");
        let state = St::new(upstream, self_base.clone(), make(&self_base));
        let router = Router::new().fallback(handle).with_state(state.clone());
        let tx = super::serve_until_dropped(listener, router);
        MaliciousServer {
            state,
            addr,
            shutdown: Some(tx),
        }
    }

    /// Like [`MaliciousServer::start`], over HTTPS with a certificate for
    /// 127.0.0.1 signed by `ca` (clients must trust `ca`).
    pub async fn start_tls(
        ca: &super::TestCa,
        upstream: Option<&str>,
        make: impl FnOnce(&str) -> Box<dyn Fn(&Recorded) -> Answer + Send + Sync>,
    ) -> MaliciousServer {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let leaf = ca.server_leaf();
        let certs = vec![CertificateDer::from(leaf.cert_der.clone())];
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())
            .expect("the test leaf key is PEM");
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a usable test server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the malicious TLS server to 127.0.0.1:0");
        let addr = listener.local_addr().expect("malicious server address");
        let self_base = format!("https://{addr}");
        let state = St::new(upstream, self_base.clone(), make(&self_base));
        let router = Router::new().fallback(handle).with_state(state.clone());
        let (tx, mut rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = &mut rx => return,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                let acceptor = acceptor.clone();
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        MaliciousServer {
            state,
            addr,
            shutdown: Some(tx),
        }
    }

    /// `http://127.0.0.1:PORT` (`https://` for [`MaliciousServer::start_tls`]).
    pub fn base_url(&self) -> String {
        self.state.self_base.clone()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Requests that carried any credential (`Authorization`, or a token or
    /// password in the query or body).
    pub fn requests_with_credentials(&self, secrets: &[&str]) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.header("authorization").is_some()
                    || secrets.iter().any(|s| {
                        r.uri.contains(s)
                            || String::from_utf8_lossy(&r.body).contains(s)
                            || r.headers.iter().any(|(_, v)| v.contains(s))
                    })
            })
            .collect()
    }
}

impl Drop for MaliciousServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn handle(State(st): State<Arc<St>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let rec = Recorded {
        method: parts.method.as_str().to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
    };
    st.log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(rec.clone());
    let (after, upstream) = match ((st.handler)(&rec), &st.upstream) {
        (Answer::Respond(r), _) => return r,
        (Answer::Silent, _) => return futures_util::future::pending().await,
        (_, None) => return status(StatusCode::NOT_FOUND, ""),
        (Answer::Forward, Some(u)) => (None, u),
        (Answer::ForwardThen(f), Some(u)) => (Some(f), u),
    };
    let mut rb = st
        .client
        .request(parts.method.clone(), format!("{upstream}{}", rec.uri));
    for (name, value) in parts.headers.iter() {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            rb = rb.header(name, value);
        }
    }
    if !body.is_empty() {
        rb = rb.body(body);
    }
    let up = match rb.send().await {
        Ok(r) => r,
        Err(e) => return status(StatusCode::BAD_GATEWAY, &format!("upstream: {e}")),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in up.headers() {
        if name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        let mut value = value.clone();
        if name == header::LOCATION
            && let Some(rest) = value.to_str().ok().and_then(|l| l.strip_prefix(upstream))
            && let Ok(v) = HeaderValue::from_str(&format!("{}{rest}", st.self_base))
        {
            value = v;
        }
        headers.append(name.clone(), value);
    }
    if let Some(f) = after {
        f(&mut headers);
    }
    let code = up.status().as_u16();
    let bytes = up.bytes().await.unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    *resp.headers_mut() = headers;
    resp
}

/// A response with `code` and a text body.
pub fn status(code: StatusCode, body: &str) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = code;
    r
}

/// A response with `code`, these headers and a body.
pub fn respond(code: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(code).expect("a valid status code");
    for (k, v) in headers {
        r.headers_mut().append(
            header::HeaderName::from_bytes(k.as_bytes()).expect("a valid header name"),
            HeaderValue::from_str(v).expect("a valid header value"),
        );
    }
    r
}

/// A body that never ends: `chunk` repeated forever, as fast as it is read.
pub fn endless_body(chunk: &'static [u8]) -> Body {
    Body::from_stream(futures_util::stream::repeat_with(move || {
        Ok::<_, std::io::Error>(Bytes::from_static(chunk))
    }))
}

/// A body that sends `chunk` once every `every`, forever.
pub fn trickling_body(chunk: &'static [u8], every: Duration) -> Body {
    Body::from_stream(futures_util::stream::unfold((), move |()| async move {
        tokio::time::sleep(every).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(chunk)), ()))
    }))
}

/// A body that sends `first` and then nothing more, without ending.
pub fn stalling_body(first: Bytes) -> Body {
    let head = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) });
    Body::from_stream(head.chain(futures_util::stream::pending()))
}
