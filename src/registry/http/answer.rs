//! Judging an answer: redirects (followed here, credentials only to the
//! registry's own origin), a 401 (one re-authentication), the statuses a
//! caller takes, and the error of any other status, with the registry's
//! own error codes and `Retry-After`.

use reqwest::{Method, Response};
use url::Url;

use super::credentials::Credentials;
use super::host::Host;
use super::origin::Destination;
use super::request::Request;
use super::retry::parse_retry_after;
use super::send::{Round, Tries};
use super::wire::{MAX_ERROR_BODY, origin_text, read_limited};
use crate::registry::error::{Error, Op, Result};
use crate::registry::escape::shown;
use crate::registry::tls_hint;

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// ` of user "NAME"` for basic credentials (the user name only, never
/// the password), else nothing.
fn user_text(creds: &Credentials) -> String {
    match creds {
        Credentials::Basic { username, .. } => format!(" of user {:?}", shown(username)),
        _ => String::new(),
    }
}

impl Host {
    /// What the answer to one round means for the request.
    pub(super) async fn answer(
        &self,
        req: &mut Request,
        tries: &mut Tries,
        dest: Destination,
        resp: Response,
        replayable: bool,
    ) -> Result<Round> {
        let status = resp.status().as_u16();
        if resp.status().is_redirection() {
            tries.redirects += 1;
            req.url = self.redirect_target(req, &resp, tries.redirects)?;
            return Ok(Round::Again);
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
        if status == 401 && !tries.reauthenticated && !req.pass_statuses.contains(&401) {
            tries.reauthenticated = true;
            req.scopes = self
                .on_challenge(req.op, &req.target, &resp, &req.scopes)
                .await?;
            if replayable {
                return Ok(Round::Again);
            }
            // The body was a stream and is gone: report a retryable
            // failure so the caller restarts the transfer, now with a
            // fresh token.
            return Err(Error::Connection {
                op: req.op,
                target: req.target.clone(),
                detail: "the registry asked to re-authenticate during the upload".into(),
            });
        }
        if resp.status().is_success() || req.pass_statuses.contains(&status) {
            return Ok(Round::Answer(resp));
        }
        if status == 401 {
            return Err(Error::Auth {
                op: req.op,
                target: req.target.clone(),
                detail: format!(
                    "registry {} refused the credentials{} (HTTP 401): check the username \
                     and password configured for it (from {})",
                    self.name,
                    user_text(&self.credentials.snapshot()),
                    self.credentials.source()
                ),
            });
        }
        self.status_error(req.op, &req.target, resp)
            .await
            .map(Round::Failed)
    }

    /// The error for a status the caller does not take. `Err` for a final
    /// one: a pull-limit 429 is not retried, retries would burn more.
    async fn status_error(&self, op: Op, target: &str, resp: Response) -> Result<Error> {
        let status = resp.status().as_u16();
        let retry_after = parse_retry_after(resp.headers());
        let headers = resp.headers().clone();
        let body = read_limited(resp, MAX_ERROR_BODY).await;
        if status == 400 && String::from_utf8_lossy(&body).contains(tls_hint::HTTP_TO_HTTPS_ANSWER)
        {
            return Ok(Error::Tls {
                op,
                target: target.to_string(),
                detail: tls_hint::http_to_https_detail(&self.name),
            });
        }
        let codes = Error::parse_codes(&body);
        if status == 429
            && let Some(e) =
                self.pulls
                    .on_too_many_requests(op, target, &headers, &codes, retry_after)
        {
            return Err(e);
        }
        Ok(Error::Status {
            op,
            target: target.to_string(),
            status,
            codes,
            retry_after,
        })
    }

    /// Where a redirect of `req` leads. Only GET and HEAD are redirected
    /// (blobs served by a storage backend); the target URL passes
    /// the origin check (`classify`) on the next round, which refuses downgrades and
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
