//! Sending one blob as a chunked upload: parts of a known length through an
//! upload session, shaped by an [`upload_plan::Plan`](super::upload_plan),
//! resumed from the session's `Range` when a part breaks, and committed only
//! once the bytes match the digest.
//!
//! The HTTP requests are behind [`Wire`], so the sequence (split, refuse,
//! shrink, resume, cancel) is tested here without a server. Memory: the
//! part being sent plus at most one chunk of the source stream (see the
//! bound in `upload_plan`).

use bytes::{Buf, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};

use super::digest::Digest;
use super::upload_plan::{MAX_PART, Plan, PlanError, Step, classify};

/// Most times one upload is resumed after broken parts.
pub const MAX_RESUMES: u32 = 8;

/// A registry's answer to one upload request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 2xx (ECR answers a `PATCH` with 201, the spec 202: both are taken).
    /// `location`: the session's next URL, resolved and checked by the
    /// wire; `chunk_min`: an `OCI-Chunk-Min-Length` it announced.
    Accepted {
        location: Option<String>,
        chunk_min: Option<u64>,
    },
    /// Any other status, with the registry's text (escaped by the wire).
    Refused { status: u16, text: String },
    /// No complete answer: the connection broke or timed out.
    Broken { detail: String },
}

/// The requests of an upload session.
pub trait Wire: Send + Sync {
    /// `PATCH` `part` at `start` (`Content-Length`, `Content-Range`).
    fn patch<'a>(&'a self, location: &'a str, start: u64, part: Bytes) -> BoxFuture<'a, Answer>;
    /// `GET` the session: the next offset its `Range` reports and its
    /// `Location`, or `None` when the session is gone or answers nothing usable.
    fn status<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Option<(u64, Option<String>)>>;
    /// The closing `PUT ?digest=` with `Content-Length: 0`.
    fn commit<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Answer>;
    /// `DELETE` the session, best effort.
    fn cancel<'a>(&'a self, location: &'a str) -> BoxFuture<'a, ()>;
}

/// Why a chunked upload failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure<E> {
    /// The source stream failed.
    Source(E),
    /// The bytes do not have the expected digest (nothing was committed).
    Digest { actual: Digest },
    /// The source sent a different number of bytes than announced.
    Size { actual: u64 },
    /// A refusal no other part size avoids, with the registry's text and
    /// the size of the refused body.
    Refused {
        status: u16,
        text: String,
        body: u64,
    },
    /// Refusals left no part size the registry takes.
    Plan(PlanError),
    /// A part broke and the session could not be resumed.
    Broken { detail: String, offset: u64 },
}

/// What a finished upload did, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub parts: u32,
    pub resumes: u32,
    /// Part bytes sent more than once (after breaks).
    pub resent: u64,
}

/// One chunked upload in progress.
struct Upload<'w> {
    wire: &'w dyn Wire,
    location: String,
    /// Bytes the registry holds.
    offset: u64,
    /// Bytes `offset..offset + buf.len()` of the blob.
    buf: BytesMut,
    part: u64,
    report: Report,
}

/// Sends `size` bytes from `source` as parts of `part` bytes into the
/// session at `location`, then commits it if they match `digest`. The
/// session is cancelled on any failure.
pub async fn send<E, S>(
    wire: &dyn Wire,
    source: S,
    plan: &mut Plan,
    digest: &Digest,
    size: u64,
    location: String,
) -> Result<Report, Failure<E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let part = plan.part_size().map_err(Failure::Plan)?.min(MAX_PART);
    let mut up = Upload {
        wire,
        location,
        offset: 0,
        buf: BytesMut::new(),
        part,
        report: Report::default(),
    };
    let result = up.run(source, plan, digest, size).await;
    if result.is_err() {
        wire.cancel(&up.location).await;
    }
    result.map(|()| up.report)
}

impl Upload<'_> {
    async fn run<E, S>(
        &mut self,
        mut source: S,
        plan: &mut Plan,
        digest: &Digest,
        size: u64,
    ) -> Result<(), Failure<E>>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let mut verifier = digest.verifier();
        let mut done = false;
        loop {
            while !done && (self.buf.len() as u64) < self.part {
                match source.next().await {
                    Some(Ok(b)) => {
                        verifier.update(&b);
                        if verifier.len() > size {
                            return Err(Failure::Size {
                                actual: verifier.len(),
                            });
                        }
                        self.buf.extend_from_slice(&b);
                    }
                    Some(Err(e)) => return Err(Failure::Source(e)),
                    None => done = true,
                }
            }
            if done && verifier.len() != size {
                return Err(Failure::Size {
                    actual: verifier.len(),
                });
            }
            if done && self.buf.is_empty() {
                break;
            }
            self.send_part(plan).await?;
        }
        if let Err(actual) = verifier.finish() {
            return Err(Failure::Digest { actual });
        }
        match self.wire.commit(&self.location).await {
            Answer::Accepted { .. } => Ok(()),
            Answer::Refused { status, text } => Err(Failure::Refused {
                status,
                text,
                body: size,
            }),
            Answer::Broken { detail } => Err(Failure::Broken {
                detail,
                offset: self.offset,
            }),
        }
    }

    /// Sends the next part of the buffer; on a size refusal shrinks the
    /// part, on a break resumes from the session's `Range`.
    async fn send_part<E>(&mut self, plan: &mut Plan) -> Result<(), Failure<E>> {
        let n = (self.buf.len() as u64).min(self.part) as usize;
        let part = Bytes::copy_from_slice(&self.buf[..n]);
        match self.wire.patch(&self.location, self.offset, part).await {
            Answer::Accepted {
                location,
                chunk_min,
            } => {
                self.report.parts += 1;
                self.advance(n as u64, location);
                if chunk_min.is_some() {
                    *plan = plan.with_session_min(chunk_min);
                    self.part = plan.part_size().map_err(Failure::Plan)?.min(MAX_PART);
                }
                Ok(())
            }
            Answer::Refused { status, text } if status < 500 => {
                let Some(refusal) = classify(status, &text) else {
                    return Err(Failure::Refused {
                        status,
                        text,
                        body: n as u64,
                    });
                };
                let step = plan.after_refusal(Step::Chunked { part: self.part }, refusal, n as u64);
                match step.map_err(Failure::Plan)? {
                    Step::Chunked { part } => self.part = part,
                    Step::Monolithic => return Err(Failure::Plan(PlanError::NoAlternative)),
                }
                Ok(())
            }
            Answer::Refused { status, text } => self.resume(format!("HTTP {status}: {text}")).await,
            Answer::Broken { detail } => self.resume(detail).await,
        }
    }

    fn advance(&mut self, n: u64, location: Option<String>) {
        self.buf.advance(n as usize);
        self.offset += n;
        if let Some(l) = location {
            self.location = l;
        }
    }

    /// Continues from the offset the session reports, when the buffer still
    /// holds the bytes from there.
    async fn resume<E>(&mut self, detail: String) -> Result<(), Failure<E>> {
        let broken = |detail: String, offset| Err(Failure::Broken { detail, offset });
        if self.report.resumes >= MAX_RESUMES {
            return broken(detail, self.offset);
        }
        self.report.resumes += 1;
        let Some((next, location)) = self.wire.status(&self.location).await else {
            return broken(detail, self.offset);
        };
        let end = self.offset + self.buf.len() as u64;
        if next < self.offset || next > end {
            return broken(
                format!(
                    "{detail}; the session reports {next} bytes, outside {}..{end}",
                    self.offset
                ),
                self.offset,
            );
        }
        self.report.resent += (self.buf.len() as u64).min(self.part) - (next - self.offset);
        self.advance(next - self.offset, location);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::profiles::{MIB, for_host};
    use crate::registry::upload_plan::UploadMemory;
    use std::sync::Mutex;

    /// An in-memory upload session with a body cap, a part minimum checked
    /// at commit, and breaks on chosen PATCHes (after taking some bytes).
    #[derive(Default)]
    struct FakeWire {
        max_body: Option<u64>,
        min_part: Option<u64>,
        /// (PATCH number, bytes of it kept before the break).
        breaks: Vec<(u32, u64)>,
        state: Mutex<FakeState>,
    }

    #[derive(Default)]
    struct FakeState {
        data: Vec<u8>,
        parts: Vec<u64>,
        patches: u32,
        committed: bool,
        cancelled: bool,
    }

    impl Wire for FakeWire {
        fn patch<'a>(&'a self, _: &'a str, start: u64, part: Bytes) -> BoxFuture<'a, Answer> {
            Box::pin(async move {
                let mut st = self.state.lock().unwrap();
                st.patches += 1;
                if self.max_body.is_some_and(|m| part.len() as u64 > m) {
                    let text = "413 Request Entity Too Large".to_string();
                    return Answer::Refused { status: 413, text };
                }
                if start != st.data.len() as u64 {
                    let text = "RANGE_INVALID".to_string();
                    return Answer::Refused { status: 416, text };
                }
                let n = st.patches;
                if let Some((_, kept)) = self.breaks.iter().find(|(k, _)| *k == n) {
                    let kept = (*kept as usize).min(part.len());
                    st.data.extend_from_slice(&part[..kept]);
                    return Answer::Broken {
                        detail: "connection reset".to_string(),
                    };
                }
                st.data.extend_from_slice(&part);
                st.parts.push(part.len() as u64);
                Answer::Accepted {
                    location: Some(format!("/u?state={n}")),
                    chunk_min: None,
                }
            })
        }
        fn status<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Option<(u64, Option<String>)>> {
            Box::pin(async move { Some((self.state.lock().unwrap().data.len() as u64, None)) })
        }
        fn commit<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Answer> {
            Box::pin(async move {
                let mut st = self.state.lock().unwrap();
                if let (Some(min), Some((_, head))) = (self.min_part, st.parts.split_last())
                    && head.iter().any(|p| *p < min)
                {
                    let text = "part too small".to_string();
                    return Answer::Refused { status: 400, text };
                }
                st.committed = true;
                Answer::Accepted {
                    location: None,
                    chunk_min: None,
                }
            })
        }
        fn cancel<'a>(&'a self, _: &'a str) -> BoxFuture<'a, ()> {
            Box::pin(async move { self.state.lock().unwrap().cancelled = true })
        }
    }

    fn blob(len: usize) -> (Vec<u8>, Digest) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let d = Digest::sha256_of(&data);
        (data, d)
    }

    /// The blob as a stream of 64 KiB chunks.
    fn stream(data: &[u8]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        let chunks: Vec<_> = data
            .chunks(64 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures_util::stream::iter(chunks)
    }

    fn chunked_plan(chunk: u64) -> Plan {
        let mut p = for_host("127.0.0.1");
        p.chunk_size = chunk;
        UploadMemory::new().plan("r", &p)
    }

    async fn run(wire: &FakeWire, plan: &mut Plan, len: usize) -> Result<Report, Failure<String>> {
        let (data, d) = blob(len);
        send(wire, stream(&data), plan, &d, len as u64, "/u".into()).await
    }

    #[tokio::test]
    async fn parts_of_the_plan_size_then_commit() {
        let wire = FakeWire::default();
        let (data, _) = blob(5 * MIB as usize + 3);
        let report = run(&wire, &mut chunked_plan(2 * MIB), data.len())
            .await
            .unwrap();
        let st = wire.state.lock().unwrap();
        assert_eq!(st.parts, vec![2 * MIB, 2 * MIB, MIB + 3]);
        assert_eq!(st.data, data);
        assert!(st.committed && !st.cancelled);
        assert_eq!(report.parts, 3);
    }

    #[tokio::test]
    async fn a_refused_part_is_split_smaller() {
        let wire = FakeWire {
            max_body: Some(MIB),
            ..Default::default()
        };
        let mut plan = chunked_plan(8 * MIB);
        let len = 10 * MIB as usize;
        run(&wire, &mut plan, len).await.unwrap();
        let st = wire.state.lock().unwrap();
        assert!(st.parts.iter().all(|p| *p <= MIB), "{:?}", st.parts);
        assert_eq!(st.data, blob(len).0);
        assert_eq!(plan.max_body, Some(MIB));
    }

    #[tokio::test]
    async fn a_broken_part_resumes_from_the_session_range() {
        let wire = FakeWire {
            breaks: vec![(4, 300_000)],
            ..Default::default()
        };
        let len = 10 * MIB as usize;
        let report = run(&wire, &mut chunked_plan(MIB), len).await.unwrap();
        let st = wire.state.lock().unwrap();
        assert_eq!(st.data, blob(len).0);
        assert_eq!(report.resumes, 1);
        assert_eq!(report.resent, MIB - 300_000);
        assert!(st.committed);
    }

    #[tokio::test]
    async fn minimum_parts_are_kept() {
        let wire = FakeWire {
            min_part: Some(5 * MIB),
            ..Default::default()
        };
        let ecr = for_host("1.dkr.ecr.us-east-1.amazonaws.com");
        let mut plan = UploadMemory::new().plan("e", &ecr);
        run(&wire, &mut plan, 12 * MIB as usize + 17).await.unwrap();
        assert!(wire.state.lock().unwrap().committed);
    }

    #[tokio::test]
    async fn a_digest_mismatch_is_never_committed() {
        let wire = FakeWire::default();
        let (data, _) = blob(3 * MIB as usize);
        let wrong = Digest::sha256_of(b"other");
        let mut plan = chunked_plan(MIB);
        let r = send(
            &wire,
            stream(&data),
            &mut plan,
            &wrong,
            data.len() as u64,
            "/u".into(),
        )
        .await;
        assert!(matches!(r, Err(Failure::Digest { .. })), "{r:?}");
        let st = wire.state.lock().unwrap();
        assert!(!st.committed && st.cancelled);
    }

    #[tokio::test]
    async fn a_short_source_and_an_unworkable_refusal_cancel_the_session() {
        let wire = FakeWire::default();
        let (data, d) = blob(MIB as usize);
        let mut plan = chunked_plan(MIB);
        let r = send(&wire, stream(&data), &mut plan, &d, 2 * MIB, "/u".into()).await;
        assert_eq!(r, Err(Failure::Size { actual: MIB }));
        assert!(wire.state.lock().unwrap().cancelled);

        let wire = FakeWire {
            min_part: Some(5 * MIB),
            ..Default::default()
        };
        let r = run(&wire, &mut chunked_plan(MIB), 3 * MIB as usize).await;
        let Err(Failure::Refused { status, text, body }) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            (status, text.as_str(), body),
            (400, "part too small", 3 * MIB)
        );
        assert!(wire.state.lock().unwrap().cancelled);
    }
}
