//! The request loop of one host: pacing, concurrency cap, authentication
//! (one re-authentication on 401), redirects followed per origin, and
//! retries of transient failures within the retry policy and the request
//! deadline.

use std::time::Instant;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, Response};
use url::Url;

use super::host::Host;
use super::retry::{backoff, is_tls_failure, parse_retry_after};
use super::wire::{MAX_ERROR_BODY, describe, origin_text, read_limited};
use crate::metrics;
use crate::registry::auth::Scopes;
use crate::registry::client::ByteStream;
use crate::registry::error::{Error, Op, Result};
use crate::registry::escape::shown;
use crate::registry::limits::within;
use crate::registry::origin::{Destination, classify};

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// A request body.
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    /// Sent once: a request with a stream body is never retried here.
    Stream(ByteStream, u64),
}

/// One request to send.
pub(crate) struct Request {
    pub op: Op,
    /// What the request is about, for errors (`host/repo:tag`).
    pub target: String,
    /// The repository the request is about: same-origin URLs must stay
    /// under `/v2/<repo>/`.
    pub repo: String,
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
    pub scopes: Scopes,
    /// Statuses handed back to the caller rather than turned into errors.
    pub pass_statuses: &'static [u16],
}

impl Host {
    /// Send a request within the request deadline (requests whose body is a
    /// stream, i.e. blob uploads, are bounded by the stream instead: see
    /// [`crate::registry::client`]'s blob guard).
    pub async fn send(&self, req: Request) -> Result<Response> {
        if matches!(req.body, Body::Stream(..)) {
            return self.send_retrying(req).await;
        }
        let (op, target) = (req.op, req.target.clone());
        within(
            self.limits.request_timeout,
            op,
            &target,
            || format!("registry {} gave no answer", self.name),
            self.send_retrying(req),
        )
        .await
    }

    /// Send a request: pacing, concurrency cap, authentication (one
    /// re-authentication on 401), redirects (followed here, credentials only
    /// to the registry's own origin) and retries with backoff on transient
    /// failures, honouring `Retry-After`.
    async fn send_retrying(&self, mut req: Request) -> Result<Response> {
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        let mut redirects = 0usize;
        let first_url = req.url.clone();
        let method_label = req.method.as_str().to_string();
        loop {
            attempt += 1;
            self.pace().await;
            let dest =
                classify(&self.base, &req.repo, &req.url).map_err(|why| Error::BadResponse {
                    op: req.op,
                    target: req.target.clone(),
                    detail: format!(
                        "regmirror refuses to request a URL of registry {} because {why}",
                        self.name
                    ),
                })?;
            let auth = match dest {
                Destination::Registry => {
                    self.authorization(req.op, &req.target, &req.scopes).await?
                }
                Destination::Foreign => None,
            };
            let (body, replayable) = match std::mem::replace(&mut req.body, Body::Empty) {
                Body::Empty => (None, true),
                Body::Bytes(b) => {
                    req.body = Body::Bytes(b.clone());
                    (Some(reqwest::Body::from(b)), true)
                }
                Body::Stream(s, len) => {
                    req.headers
                        .insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(len));
                    (Some(reqwest::Body::wrap_stream(s)), false)
                }
            };
            let mut builder = self
                .http
                .request(req.method.clone(), req.url.clone())
                .headers(req.headers.clone());
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
            let error = match result {
                Err(e) => {
                    metrics::record_response(&self.name, &method_label, None);
                    let detail = describe(&e);
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
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    metrics::record_response(&self.name, &method_label, Some(status));
                    self.note_rate_limit(&resp);
                    match &mut ticket {
                        Some(t) => t.answered(resp.headers()),
                        None if req.op == Op::HeadManifest => {
                            self.pulls.observe(resp.headers(), sent_at);
                        }
                        None => {}
                    }
                    drop(ticket);
                    if resp.status().is_redirection() {
                        redirects += 1;
                        req.url = self.redirect_target(&req, &resp, redirects)?;
                        attempt -= 1;
                        continue;
                    }
                    if status == 401 && dest == Destination::Foreign {
                        return Err(Error::Auth {
                            op: req.op,
                            target: req.target.clone(),
                            detail: format!(
                                "{} (another origin than registry {}) asked for credentials \
                                 (HTTP 401); regmirror sends credentials only to the registry's \
                                 own origin and its token service, so it stops here",
                                shown(&origin_text(&req.url)),
                                self.name
                            ),
                        });
                    }
                    if status == 401 && !reauthenticated && !req.pass_statuses.contains(&401) {
                        reauthenticated = true;
                        let scopes = self
                            .on_challenge(req.op, &req.target, &resp, &req.scopes)
                            .await?;
                        req.scopes = scopes;
                        if replayable {
                            attempt -= 1;
                            continue;
                        }
                        // The body was a stream and is gone: report a
                        // retryable failure so the caller restarts the
                        // transfer, now with a fresh token.
                        return Err(Error::Connection {
                            op: req.op,
                            target: req.target.clone(),
                            detail: "the registry asked to re-authenticate during the upload"
                                .into(),
                        });
                    }
                    if resp.status().is_success() || req.pass_statuses.contains(&status) {
                        return Ok(resp);
                    }
                    if status == 401 {
                        return Err(Error::Auth {
                            op: req.op,
                            target: req.target.clone(),
                            detail: format!(
                                "registry {} refused the credentials (HTTP 401): check the username and password configured for it",
                                self.name
                            ),
                        });
                    }
                    let retry_after = parse_retry_after(resp.headers());
                    let headers = resp.headers().clone();
                    let body = read_limited(resp, MAX_ERROR_BODY).await;
                    let codes = Error::parse_codes(&body);
                    // A pull-limit 429 is not retried: retries would burn more.
                    if status == 429
                        && let Some(e) = self.pulls.on_too_many_requests(
                            req.op,
                            &req.target,
                            &headers,
                            &codes,
                            retry_after,
                        )
                    {
                        return Err(e);
                    }
                    Error::Status {
                        op: req.op,
                        target: req.target.clone(),
                        status,
                        codes,
                        retry_after,
                    }
                }
            };
            if !error.is_retryable() || !replayable {
                return Err(error);
            }
            let elapsed = started.elapsed();
            let backoff = backoff(&self.retry, attempt, &error);
            if attempt >= self.retry.max_attempts || elapsed + backoff > self.retry.max_elapsed {
                return Err(Error::RetriesExhausted {
                    attempts: attempt,
                    elapsed,
                    last: Box::new(error),
                });
            }
            metrics::record_retry(&self.name);
            tracing::debug!(registry = %self.name, op = %req.op, attempt, delay_ms = backoff.as_millis() as u64, error = %error, "retrying");
            tokio::time::sleep(backoff).await;
            req.url = first_url.clone();
        }
    }

    fn note_rate_limit(&self, resp: &Response) {
        if let Some(rem) = resp
            .headers()
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .and_then(|v| v.trim().parse::<i64>().ok())
        {
            metrics::set_ratelimit_remaining(&self.name, rem);
        }
    }

    /// Where a redirect of `req` leads. Only GET and HEAD are redirected
    /// (blobs served by a storage backend); the target URL passes
    /// [`classify`] on the next round, which refuses downgrades and
    /// same-origin paths outside the repository and strips credentials for
    /// other origins.
    fn redirect_target(&self, req: &Request, resp: &Response, n: usize) -> Result<Url> {
        let err = |detail: String| Error::BadResponse {
            op: req.op,
            target: req.target.clone(),
            detail,
        };
        let status = resp.status().as_u16();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Err(err(format!(
                "registry {} answered HTTP {status}, a redirect status regmirror does not handle",
                self.name
            )));
        }
        if req.method != Method::GET && req.method != Method::HEAD {
            return Err(err(format!(
                "registry {} answered a {} with a redirect (HTTP {status}); regmirror follows \
                 redirects of reads only",
                self.name, req.method
            )));
        }
        if n > MAX_REDIRECTS {
            return Err(err(format!(
                "registry {} redirected more than {MAX_REDIRECTS} times",
                self.name
            )));
        }
        let loc = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                err(format!(
                    "registry {} answered HTTP {status} without a usable Location",
                    self.name
                ))
            })?;
        let next = req.url.join(loc).map_err(|_| {
            err(format!(
                "registry {} redirected to an unusable URL {:?}",
                self.name,
                shown(loc)
            ))
        })?;
        self.check_url(req.op, &req.target, &req.repo, &next, "redirect")?;
        Ok(next)
    }
}
