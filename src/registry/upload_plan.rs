//! The adaptive blob-upload strategy, as a pure state machine.
//!
//! A blob goes up monolithic (one `PUT` with its `Content-Length`) while the
//! target takes that; a refusal that names the body size (413, or a 400 that
//! names `Content-Length` or chunked transfer encoding, as ACR answers) makes
//! the plan retry that blob chunked, with parts under a smaller limit, and
//! remember that limit for the registry. Parts always have a known length:
//! `Transfer-Encoding: chunked` is never needed.
//!
//! Part sizes stay within the registry's bounds: at or above its minimum
//! (ECR's 5 MiB, a session's `OCI-Chunk-Min-Length`) for every part but the
//! last, at or below its largest accepted body, and never above
//! [`MAX_PART`]. A chunked upload holds one part in memory while it is sent
//! (so that a refused or broken part can be sent again), so the memory chunk
//! buffers take is at most `MAX_PART` (64 MiB) per concurrent blob upload,
//! and with the default 8 MiB parts 8 MiB per upload.
//!
//! The learned limits live in an [`UploadMemory`], owned by one registry
//! client: they last as long as that client (one `import` or `sync` run, or
//! the life of the serving daemon) and are never written anywhere.
//!
//! This module performs no I/O; the HTTP code asks it what to send next.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use super::profiles::{MIB, Profile, UploadMode};

/// The largest part held in memory, whatever the settings ask.
pub const MAX_PART: u64 = 64 * MIB;
/// The smallest part limit tried after refusals; below it the upload fails.
pub const MIN_TRIED_PART: u64 = 64 * 1024;

/// How to send (the rest of) a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// One `PUT` with the whole body.
    Monolithic,
    /// `PATCH` parts of `part` bytes (the last may be shorter), then `PUT`.
    Chunked { part: u64 },
}

/// A refusal that the plan can answer with a different shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The body was too large (413, or a 400 naming the body's length).
    TooLarge,
    /// The registry wants a declared length (411, or a 400 naming chunked
    /// transfer encoding).
    LengthRequired,
}

/// Classifies an answer to an upload request: `None` when the status and
/// body are not a size or length refusal the plan can work around.
pub fn classify(status: u16, body: &str) -> Option<Refusal> {
    let lower = body.to_ascii_lowercase();
    match status {
        413 => Some(Refusal::TooLarge),
        411 => Some(Refusal::LengthRequired),
        400 if lower.contains("chunked") || lower.contains("content_length_invalid") => {
            Some(Refusal::LengthRequired)
        }
        400 if lower.contains("too large") || lower.contains("entity too large") => {
            Some(Refusal::TooLarge)
        }
        400 if lower.contains("content-length") || lower.contains("content length") => {
            Some(Refusal::TooLarge)
        }
        _ => None,
    }
}

/// Why an upload cannot be shaped to fit the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The registry's minimum part is above its largest accepted body.
    Conflict { min_part: u64, max_body: u64 },
    /// Refusals pushed the part limit below [`MIN_TRIED_PART`].
    TooSmall { refused: u64 },
    /// A refusal the plan has no different shape for.
    NoAlternative,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Conflict { min_part, max_body } => write!(
                f,
                "the registry wants parts of at least {min_part} bytes but refuses bodies \
                 above {max_body} bytes; set upload limits for this registry in the config"
            ),
            PlanError::TooSmall { refused } => write!(
                f,
                "the registry refused a body of {refused} bytes, and parts below \
                 {MIN_TRIED_PART} bytes are not tried"
            ),
            PlanError::NoAlternative => write!(f, "no other upload shape is left to try"),
        }
    }
}

/// What was learned about one registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Learned {
    /// Largest body believed accepted.
    max_body: Option<u64>,
    /// Monolithic uploads were refused: go chunked from the start.
    chunked: bool,
}

/// Upload limits learned per registry, for the life of the owner (see the
/// module doc). Shared by the concurrent uploads of one client.
#[derive(Debug, Default)]
pub struct UploadMemory {
    learned: Mutex<HashMap<String, Learned>>,
}

impl UploadMemory {
    pub fn new() -> UploadMemory {
        UploadMemory::default()
    }

    fn get(&self, registry: &str) -> Learned {
        let map = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        map.get(registry).copied().unwrap_or_default()
    }

    /// The plan for one blob into `registry`: the profile (with the user's
    /// overrides applied) tightened by what refusals taught so far.
    pub fn plan(&self, registry: &str, profile: &Profile) -> Plan {
        let learned = self.get(registry);
        Plan {
            mode: if learned.chunked {
                UploadMode::Chunked
            } else {
                profile.mode
            },
            max_body: min_opt(profile.max_body, learned.max_body),
            min_part: profile.min_part,
            chunk_size: profile.chunk_size,
        }
    }

    /// Remembers what `plan` learned (after a refusal) for later blobs.
    pub fn remember(&self, registry: &str, plan: &Plan) {
        let mut map = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(registry.to_string()).or_default();
        entry.max_body = min_opt(entry.max_body, plan.max_body);
        entry.chunked |= plan.mode == UploadMode::Chunked;
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The upload plan of one blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub mode: UploadMode,
    pub max_body: Option<u64>,
    pub min_part: Option<u64>,
    pub chunk_size: u64,
}

impl Plan {
    /// The first step for a blob of `size` bytes.
    pub fn first(&self, size: u64) -> Result<Step, PlanError> {
        let fits = self.max_body.is_none_or(|max| size <= max);
        if self.mode == UploadMode::Monolithic && fits {
            return Ok(Step::Monolithic);
        }
        let part = self.part_size()?;
        // A registry's minimum above what is buffered: the whole blob is
        // one body, which every minimum allows.
        if part > MAX_PART && fits {
            return Ok(Step::Monolithic);
        }
        Ok(Step::Chunked {
            part: part.min(MAX_PART),
        })
    }

    /// The part size: the preferred size within the registry's bounds.
    pub fn part_size(&self) -> Result<u64, PlanError> {
        let min = self.min_part.unwrap_or(1);
        let mut part = self.chunk_size.clamp(1, MAX_PART).max(min);
        if let Some(max) = self.max_body {
            if min > max {
                return Err(PlanError::Conflict {
                    min_part: min,
                    max_body: max,
                });
            }
            part = part.min(max);
        }
        Ok(part)
    }

    /// The plan once the session announced `OCI-Chunk-Min-Length`.
    pub fn with_session_min(mut self, min: Option<u64>) -> Plan {
        if let Some(min) = min.filter(|m| *m > 0) {
            self.min_part = Some(self.min_part.map_or(min, |m| m.max(min)));
        }
        self
    }

    /// After `refusal` of a body of `refused` bytes sent as `step`: the step
    /// to retry the blob with. The plan keeps the lowered limit; pass it to
    /// [`UploadMemory::remember`] so later blobs start right.
    pub fn after_refusal(
        &mut self,
        step: Step,
        refusal: Refusal,
        refused: u64,
    ) -> Result<Step, PlanError> {
        match refusal {
            Refusal::TooLarge => {
                let limit = rung_below(refused).ok_or(PlanError::TooSmall { refused })?;
                self.max_body = min_opt(self.max_body, Some(limit));
            }
            // Bodies always declare their length; a monolithic body of a
            // known length refused this way is retried in parts.
            Refusal::LengthRequired if step == Step::Monolithic => {}
            Refusal::LengthRequired => return Err(PlanError::NoAlternative),
        }
        self.mode = UploadMode::Chunked;
        let part = self.part_size()?;
        if part > MAX_PART {
            return Err(PlanError::NoAlternative);
        }
        Ok(Step::Chunked { part })
    }
}

/// The largest power-of-two size (16 MiB down to [`MIN_TRIED_PART`]) below
/// `refused`.
fn rung_below(refused: u64) -> Option<u64> {
    let mut rung = 16 * MIB;
    while rung >= MIN_TRIED_PART {
        if rung < refused {
            return Some(rung);
        }
        rung /= 2;
    }
    None
}

/// The part lengths of a chunked upload of `size` bytes from `offset`.
pub fn parts(offset: u64, size: u64, part: u64) -> impl Iterator<Item = (u64, u64)> {
    let part = part.max(1);
    (0..)
        .map(move |i| offset + i * part)
        .take_while(move |start| *start < size)
        .map(move |start| (start, (size - start).min(part)))
}

/// The next offset of an upload session from its `Range` answer
/// (`0-<last>`, sometimes `bytes=0-<last>`). Distribution answers `0-0` for
/// an empty session too, so `0-0` counts as nothing received (at worst one
/// byte is sent again). `None`: not a range starting at 0.
pub fn next_offset(range: &str) -> Option<u64> {
    let r = range.trim();
    let r = r.strip_prefix("bytes=").unwrap_or(r);
    let (start, end) = r.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    let end: u64 = end.trim().parse().ok()?;
    Some(if end == 0 { 0 } else { end + 1 })
}

/// Whether a blob GET's `Content-Range` (`bytes <start>-<end>/<total>`)
/// proves the answer resumes at `offset` of a blob of `size` bytes.
pub fn resumes_at(content_range: &str, offset: u64, size: u64) -> bool {
    let Some(rest) = content_range.trim().strip_prefix("bytes ") else {
        return false;
    };
    let Some((span, total)) = rest.split_once('/') else {
        return false;
    };
    let Some((start, end)) = span.split_once('-') else {
        return false;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    let total_ok = total.trim() == "*" || parse(total) == Some(size);
    parse(start) == Some(offset) && parse(end) == size.checked_sub(1) && total_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::profiles::{Family, for_host};

    fn generic() -> Profile {
        for_host("127.0.0.1:5000")
    }

    #[test]
    fn monolithic_while_taken_then_chunked_after_413() {
        let mem = UploadMemory::new();
        let mut plan = mem.plan("r", &generic());
        let size = 48 * MIB;
        assert_eq!(plan.first(size), Ok(Step::Monolithic));
        // nginx: 413 on anything above 1 MiB; each refusal halves the part.
        let mut step = Step::Monolithic;
        let mut refused = size;
        let mut tries = 0;
        while refused > MIB {
            step = plan
                .after_refusal(step, Refusal::TooLarge, refused)
                .unwrap();
            let Step::Chunked { part } = step else {
                panic!("{step:?}")
            };
            refused = part;
            tries += 1;
        }
        assert_eq!(step, Step::Chunked { part: MIB });
        assert_eq!(tries, 4);
        mem.remember("r", &plan);
        let next = mem.plan("r", &generic());
        assert_eq!(next.first(size), Ok(Step::Chunked { part: MIB }));
        // Other registries learn nothing from it.
        assert_eq!(mem.plan("s", &generic()).first(size), Ok(Step::Monolithic));
    }

    #[test]
    fn acr_profile_starts_chunked_under_its_cap() {
        let acr = for_host("x.azurecr.io");
        let plan = UploadMemory::new().plan("x.azurecr.io", &acr);
        let Ok(Step::Chunked { part }) = plan.first(48 * MIB) else {
            panic!()
        };
        assert!((5 * MIB..=20 * 1000 * 1000).contains(&part));
    }

    #[test]
    fn minimums_are_kept_and_conflicts_named() {
        let ecr = for_host("1.dkr.ecr.us-east-1.amazonaws.com");
        assert_eq!(ecr.family, Family::Ecr);
        let mut plan = UploadMemory::new().plan("e", &ecr);
        let step = plan.after_refusal(Step::Monolithic, Refusal::TooLarge, 48 * MIB);
        assert_eq!(step, Ok(Step::Chunked { part: 8 * MIB }));
        let step = plan.after_refusal(step.unwrap(), Refusal::TooLarge, 8 * MIB);
        let err = step.unwrap_err();
        assert_eq!(
            err,
            PlanError::Conflict {
                min_part: 5 * MIB,
                max_body: 4 * MIB
            }
        );
        assert!(err.to_string().contains("at least 5242880 bytes"), "{err}");
    }

    #[test]
    fn session_minimum_raises_parts() {
        let mut p = generic();
        p.chunk_size = MIB;
        p.mode = UploadMode::Chunked;
        let plan = UploadMemory::new().plan("r", &p);
        let plan = plan.with_session_min(Some(6 * MIB));
        assert_eq!(plan.first(48 * MIB), Ok(Step::Chunked { part: 6 * MIB }));
        // A minimum above the buffer cap: the blob goes whole.
        let plan = plan.with_session_min(Some(2 * MAX_PART));
        assert_eq!(plan.first(48 * MIB), Ok(Step::Monolithic));
    }

    #[test]
    fn parts_never_exceed_the_buffer_cap() {
        let mut p = generic();
        p.chunk_size = 10 * MAX_PART;
        p.mode = UploadMode::Chunked;
        let plan = UploadMemory::new().plan("r", &p);
        assert_eq!(plan.first(1 << 40), Ok(Step::Chunked { part: MAX_PART }));
    }

    #[test]
    fn length_refusals() {
        assert_eq!(
            classify(413, "413 Request Entity Too Large - AzureContainerRegistry"),
            Some(Refusal::TooLarge)
        );
        assert_eq!(
            classify(400, r#"{"errors":[{"code":"CONTENT_LENGTH_INVALID"}]}"#),
            Some(Refusal::LengthRequired)
        );
        assert_eq!(classify(411, "<html>"), Some(Refusal::LengthRequired));
        assert_eq!(classify(400, "DIGEST_INVALID"), None);
        assert_eq!(classify(500, "too large"), None);
        let mut plan = UploadMemory::new().plan("r", &generic());
        let step = plan.after_refusal(Step::Monolithic, Refusal::LengthRequired, 48 * MIB);
        assert_eq!(step, Ok(Step::Chunked { part: 8 * MIB }));
        let again = plan.after_refusal(step.unwrap(), Refusal::LengthRequired, 8 * MIB);
        assert_eq!(again, Err(PlanError::NoAlternative));
        let tiny = plan.after_refusal(Step::Monolithic, Refusal::TooLarge, MIN_TRIED_PART);
        assert_eq!(tiny, Err(PlanError::TooSmall { refused: 65536 }));
    }

    #[test]
    fn part_lengths_cover_the_blob() {
        let got: Vec<_> = parts(0, 10, 4).collect();
        assert_eq!(got, vec![(0, 4), (4, 4), (8, 2)]);
        let got: Vec<_> = parts(8, 10, 4).collect();
        assert_eq!(got, vec![(8, 2)]);
        assert_eq!(parts(0, 0, 4).count(), 0);
    }

    #[test]
    fn session_ranges() {
        assert_eq!(next_offset("0-1023"), Some(1024));
        assert_eq!(next_offset("bytes=0-9"), Some(10));
        assert_eq!(next_offset("0-0"), Some(0));
        assert_eq!(next_offset("5-9"), None);
        assert_eq!(next_offset("junk"), None);
    }

    #[test]
    fn content_ranges_prove_a_resume() {
        assert!(resumes_at("bytes 100-199/200", 100, 200));
        assert!(resumes_at("bytes 100-199/*", 100, 200));
        assert!(!resumes_at("bytes 0-199/200", 100, 200));
        assert!(!resumes_at("bytes 100-150/200", 100, 200));
        assert!(!resumes_at("bytes 100-199/300", 100, 200));
        assert!(!resumes_at("100-199/200", 100, 200));
    }
}
