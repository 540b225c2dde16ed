//! The request loop of one host: one loop and one deadline per request.
//! Each round paces, takes a concurrency permit, authenticates, sends and
//! judges the answer (see [`super::answer`]); a caller that reads the body
//! does so inside the same loop, so a body cut off mid-way is retried with
//! the same attempts, backoff and deadline as a failed request.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use reqwest::Response;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderMap, HeaderValue};
use url::Url;

use super::host::Host;
use super::origin::{Destination, classify};
use super::request::{Body, Request};
use super::retry::{Next, after_failure, is_tls_failure};
use super::trace;
use super::wire::{describe, read_body};
use crate::metrics;
use crate::registry::error::{Error, Op, Result};
use crate::registry::limits::within;

/// What one round trip came to.
pub(super) enum Round {
    /// The answer to hand to the caller (a success or a passed status).
    Answer(Response),
    /// Send again at once, not counted as an attempt (a redirect, or a
    /// re-authentication after a 401).
    Again,
    /// A failure, retried when it is transient and the body can be resent.
    Failed(Error),
}

/// The state of one request across its rounds.
pub(super) struct Tries {
    started: Instant,
    attempt: u32,
    pub reauthenticated: bool,
    pub redirects: usize,
    first_url: Url,
    method: String,
}

impl Host {
    /// Send a request within the request deadline (requests whose body is a
    /// stream, i.e. blob uploads, are bounded by the stream instead: see
    /// [`crate::registry::client`]'s blob guard).
    pub async fn send(&self, req: Request) -> Result<Response> {
        let answer = |resp: Response| async move { Ok(resp) };
        if matches!(req.body, Body::Stream(..)) {
            return self.run(req, answer).await;
        }
        let (op, target) = (req.op, req.target.clone());
        within(
            self.limits.request_timeout,
            op,
            &target,
            || format!("registry {} gave no answer", self.name),
            self.run(req, answer),
        )
        .await
    }

    /// Send a GET and read its whole body (at most `max` bytes, a `what`
    /// for errors). A connection that breaks mid-body (the status and
    /// headers had arrived) counts as a failed attempt of the same request:
    /// it is sent again within the one retry policy and request deadline.
    pub async fn get_body(
        &self,
        req: Request,
        max: usize,
        what: &str,
    ) -> Result<(HeaderMap, Bytes)> {
        let (op, target) = (req.op, req.target.clone());
        let answered = AtomicBool::new(false);
        let (flag, name, shown_target) = (&answered, self.name.as_str(), target.as_str());
        let read = move |resp: Response| async move {
            flag.store(true, Ordering::Relaxed);
            let headers = resp.headers().clone();
            let bytes = read_body(resp, max, op, shown_target, what, name).await?;
            Ok((headers, bytes))
        };
        within(
            self.limits.request_timeout,
            op,
            &target,
            || {
                if answered.load(Ordering::Relaxed) {
                    format!("registry {} did not send the whole {what}", self.name)
                } else {
                    format!("registry {} gave no answer", self.name)
                }
            },
            self.run(req, read),
        )
        .await
    }

    /// The retry loop: rounds until `finish` accepts an answer or a failure
    /// is final. Failures of `finish` (a body cut off) are retried like
    /// failed requests; attempts, backoff and `Retry-After` follow the
    /// retry policy (see [`super::retry`]).
    async fn run<T, F, Fut>(&self, mut req: Request, mut finish: F) -> Result<T>
    where
        F: FnMut(Response) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut tries = Tries {
            started: Instant::now(),
            attempt: 0,
            reauthenticated: false,
            redirects: 0,
            first_url: req.url.clone(),
            method: req.method.as_str().to_string(),
        };
        loop {
            tries.attempt += 1;
            let replayable = !matches!(req.body, Body::Stream(..));
            let error = match self.round(&mut req, &mut tries, replayable).await? {
                Round::Again => {
                    tries.attempt -= 1;
                    continue;
                }
                Round::Answer(resp) => match finish(resp).await {
                    Ok(done) => return Ok(done),
                    Err(e) => e,
                },
                Round::Failed(e) => e,
            };
            let elapsed = tries.started.elapsed();
            let delay = match after_failure(&self.retry, tries.attempt, elapsed, &error, replayable)
            {
                Next::Stop => return Err(error),
                Next::Exhausted => {
                    return Err(Error::RetriesExhausted {
                        attempts: tries.attempt,
                        elapsed,
                        last: Box::new(error),
                    });
                }
                Next::Retry(delay) => delay,
            };
            metrics::record_retry(&self.name);
            tracing::debug!(registry = %self.name, op = %req.op, attempt = tries.attempt, delay_ms = delay.as_millis() as u64, error = %error, "retrying");
            if !super::retry::wait(delay).await {
                return Err(error);
            }
            req.url = tries.first_url.clone();
        }
    }

    /// One round trip: pacing, the URL check, authentication, the pull
    /// allowance, the concurrency cap, sending, then judging the answer.
    async fn round(&self, req: &mut Request, tries: &mut Tries, replayable: bool) -> Result<Round> {
        self.pace().await;
        let dest = classify(&self.base, &req.repo, &req.url).map_err(|why| Error::BadResponse {
            op: req.op,
            target: req.target.clone(),
            detail: format!(
                "regmirror refuses to request a URL of registry {} because {why}",
                self.name
            ),
        })?;
        let auth = match dest {
            Destination::Registry => self.authorization(req.op, &req.target, &req.scopes).await?,
            Destination::Foreign => None,
        };
        let body = take_body(req);
        let mut builder = self
            .http
            .request(req.method.clone(), req.url.clone())
            .headers(req.headers.clone());
        let auth_scheme = trace::auth_scheme(auth.as_ref());
        if let Some(a) = auth {
            builder = builder.header(AUTHORIZATION, a);
        }
        if let Some(b) = body {
            builder = builder.body(b);
        }
        // Manifest GETs spend the pull allowance: refused, not sent,
        // below the floor or while the pull-limit circuit is open.
        let mut ticket = self.pulls.admit(req.op, &req.target)?;
        let sent_at = Instant::now();
        let result = {
            let _permit = self.limit.acquire().await.ok();
            builder.send().await
        };
        let sent = trace::Sent {
            token: false,
            registry: &self.name,
            method: &tries.method,
            url: &req.url,
            auth: auth_scheme,
            attempt: tries.attempt,
            took: sent_at.elapsed(),
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                metrics::record_response(&self.name, &tries.method, None);
                let error = transport_error(req, &e);
                sent.log(Err(&error.to_string()));
                return Ok(Round::Failed(error));
            }
        };
        sent.log(Ok(resp.status().as_u16()));
        metrics::record_response(&self.name, &tries.method, Some(resp.status().as_u16()));
        self.log_warnings(&resp);
        match &mut ticket {
            Some(t) => t.answered(resp.headers()),
            None if req.op == Op::HeadManifest => {
                self.pulls.observe(resp.headers(), sent_at);
            }
            None => {}
        }
        drop(ticket);
        let (redirects, status) = (tries.redirects, resp.status().as_u16());
        let round = self.answer(req, tries, dest, resp, replayable).await;
        if tries.redirects > redirects {
            trace::redirect(&self.name, status, &req.url);
        }
        round
    }
}

impl Host {
    /// Logs each `Warning` of an answer (spec 1.1) once per registry and
    /// text, escaped; warnings are never acted on.
    fn log_warnings(&self, resp: &Response) {
        let values = resp
            .headers()
            .get_all(reqwest::header::WARNING)
            .iter()
            .filter_map(|v| v.to_str().ok());
        for text in self.warnings.fresh(&self.name, values) {
            tracing::warn!(registry = %self.name, "registry {} warns: {text}", self.name);
        }
    }
}

/// The body to send this round. Bytes stay for a resend; a stream is sent
/// once (the request then has none left to replay). A body-less POST, PUT
/// or PATCH says `Content-Length: 0`: some registries answer 411 otherwise.
fn take_body(req: &mut Request) -> Option<reqwest::Body> {
    match std::mem::replace(&mut req.body, Body::Empty) {
        Body::Empty => {
            if matches!(
                req.method,
                reqwest::Method::POST | reqwest::Method::PUT | reqwest::Method::PATCH
            ) {
                req.headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
            }
            None
        }
        Body::Bytes(b) => {
            req.body = Body::Bytes(b.clone());
            Some(reqwest::Body::from(b))
        }
        Body::Stream(s, len) => {
            req.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            Some(reqwest::Body::wrap_stream(s))
        }
    }
}

/// A request that got no answer: a TLS failure (final) or a connection
/// failure (transient).
fn transport_error(req: &Request, e: &reqwest::Error) -> Error {
    let detail = describe(e);
    if is_tls_failure(&detail) {
        Error::Tls {
            op: req.op,
            target: req.target.clone(),
            detail,
        }
    } else {
        Error::Connection {
            op: req.op,
            target: req.target.clone(),
            detail,
        }
    }
}
