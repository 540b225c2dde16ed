//! Progress of `regmirror sync`, per mirror: images done out of those
//! selected, bytes copied, rate and (on a terminal) an ETA.
//!
//! On a terminal (stderr), one `indicatif` bar per mirror; elsewhere, and
//! always with `--log-format json`, plain log events: one every
//! [`LINE_INTERVAL`] while a mirror runs and one when its last image is done (`mirror NAME: 120/250 images, 1.20 GiB,
//! 30.00 MiB/s`; as JSON, the fields `mirror`, `images_done`,
//! `images_total`, `bytes`, `bytes_per_second`).
//!
//! `--progress bar` draws the bars even when stderr is not a terminal, for
//! CI log viewers that render carriage returns and erase-line sequences
//! (see [`ForcedTerm`]).
//!
//! Log lines never cut through a bar: every log line and diagnostic goes
//! through [`log_writer`] / [`suspend`], which hide the bars while it is
//! written. Progress goes to stderr only; stdout keeps the report alone.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{
    BinaryBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike,
};

use regmirror::sync::run::ImageReport;

/// How often a plain progress line is written for a mirror still running.
pub const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// Redraws a second of forced bars (`--progress bar`): a CI log keeps every
/// frame, so fewer than on a terminal.
const FORCED_HZ: u8 = 2;

/// The bars being drawn, when any: log lines are written around them.
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// `--progress`: how `sync` shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Bars on a terminal; plain log lines when stderr is not a terminal
    /// or logs are JSON.
    Auto,
    /// Plain log lines (every 10 s and when a mirror ends), even on a terminal.
    Plain,
    /// Bars even when stderr is not a terminal (a CI log that renders
    /// carriage returns) or logs are JSON.
    Bar,
    /// No progress output.
    None,
}

/// Run `f` with the progress bars (if any) hidden, so that what it writes
/// to stderr is not mixed into a bar.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bars = BARS.lock().unwrap_or_else(PoisonError::into_inner).clone();
    match bars {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

/// The writer of log lines (see [`suspend`]).
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// stderr, written around the progress bars.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        suspend(|| io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// One mirror's count.
struct Tally {
    total: usize,
    /// The images done, each by the SHA-256 of its (source, target) (see
    /// [`image_key`]): 32 bytes an image, however long its names.
    done: HashSet<[u8; 32]>,
    bytes: u64,
    started: Instant,
    bar: Option<ProgressBar>,
    ended: bool,
}

impl Tally {
    /// `1.20 GiB, 30.00 MiB/s`.
    fn bytes_and_rate(&self) -> String {
        format!(
            "{}, {}/s",
            BinaryBytes(self.bytes),
            BinaryBytes(self.rate())
        )
    }

    fn rate(&self) -> u64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            (self.bytes as f64 / secs) as u64
        } else {
            0
        }
    }
}

/// The key of an image in a tally: the SHA-256 of its source and target,
/// each prefixed with its length, so that no two (source, target) pairs
/// share a key.
fn image_key(source: &str, target: &str) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut hash = Sha256::new();
    for part in [source, target] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

/// The progress of one `sync` run. Dropping it stops the bars and lines.
pub struct SyncProgress {
    bars: Option<MultiProgress>,
    json: bool,
    mirrors: Mutex<BTreeMap<String, Tally>>,
    ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SyncProgress {
    /// The progress for `mode`, or `None` when none is shown. Must be
    /// called within the runtime (plain lines are timed by a task).
    /// `json`: logs are JSON (`--log-format json`), so no bars.
    pub fn start(mode: Mode, json: bool) -> Option<Arc<SyncProgress>> {
        if mode == Mode::None {
            return None;
        }
        let terminal = std::io::stderr().is_terminal();
        let bars = match mode {
            Mode::Bar => Some(MultiProgress::with_draw_target(
                ProgressDrawTarget::term_like_with_hz(Box::new(ForcedTerm::new()), FORCED_HZ),
            )),
            Mode::Auto if terminal && !json => Some(MultiProgress::new()),
            _ => None,
        };
        *BARS.lock().unwrap_or_else(PoisonError::into_inner) = bars.clone();
        let progress = Arc::new(SyncProgress {
            bars,
            json,
            mirrors: Mutex::new(BTreeMap::new()),
            ticker: Mutex::new(None),
        });
        if progress.bars.is_none() {
            let weak = Arc::downgrade(&progress);
            let ticker = tokio::spawn(async move {
                let mut every = tokio::time::interval(LINE_INTERVAL);
                every.tick().await;
                loop {
                    every.tick().await;
                    let Some(p) = weak.upgrade() else { return };
                    p.lines_for_running();
                }
            });
            *progress
                .ticker
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(ticker);
        }
        Some(progress)
    }

    /// `mirror` selected `total` images.
    pub fn selected(&self, mirror: &str, total: usize) {
        let mut mirrors = self.lock();
        let bar = self.bars.as_ref().map(|m| m.add(new_bar(mirror, total)));
        let tally = Tally {
            total,
            done: HashSet::new(),
            bytes: 0,
            started: Instant::now(),
            bar,
            ended: false,
        };
        let tally = mirrors.entry(mirror.to_string()).or_insert(tally);
        show(mirror, tally, self.json);
    }

    /// One image of `mirror` is done (an image reported twice, such as a
    /// deferred one tried again, counts once).
    pub fn image_done(&self, mirror: &str, report: &ImageReport) {
        let mut mirrors = self.lock();
        let Some(tally) = mirrors.get_mut(mirror) else {
            return;
        };
        tally.done.insert(image_key(&report.source, &report.target));
        tally.bytes += report.copy.as_ref().map_or(0, |c| c.bytes_copied);
        show(mirror, tally, self.json);
    }

    /// Stop drawing: bars stay on screen as they are; no more lines.
    pub fn finish(&self) {
        if let Some(t) = self
            .ticker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
        for tally in self.lock().values_mut() {
            if let Some(bar) = tally.bar.take() {
                bar.abandon();
            }
        }
        *BARS.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// A line for each mirror still running.
    fn lines_for_running(&self) {
        for (name, tally) in self.lock().iter() {
            if !tally.ended {
                line(name, tally, self.json);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Tally>> {
        self.mirrors.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for SyncProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Bring the bar or the lines of `mirror` up to date with `tally`: a bar
/// moves; a line is written when the mirror ends (the log event "mirror run
/// started" already says how many images it selected).
fn show(mirror: &str, tally: &mut Tally, json: bool) {
    let done = tally.done.len();
    let ending = done >= tally.total && !tally.ended;
    match &tally.bar {
        Some(bar) => {
            bar.set_position(done as u64);
            bar.set_message(tally.bytes_and_rate());
            if ending {
                bar.finish();
            }
        }
        None if ending => line(mirror, tally, json),
        None => {}
    }
    tally.ended |= ending;
}

/// One plain progress line: a log event, text or JSON.
fn line(mirror: &str, tally: &Tally, json: bool) {
    let done = tally.done.len();
    let text = format!(
        "mirror {mirror}: {done}/{} images, {}",
        tally.total,
        tally.bytes_and_rate()
    );
    if json {
        tracing::info!(
            mirror,
            images_done = done,
            images_total = tally.total,
            bytes = tally.bytes,
            bytes_per_second = tally.rate(),
            "{text}"
        );
    } else {
        tracing::info!("{text}");
    }
}

/// A bar for `total` images of `mirror`.
fn new_bar(mirror: &str, total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} images, {msg}, {elapsed} (ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("mirror {mirror}"));
    bar.set_message(format!("{}, {}/s", BinaryBytes(0), BinaryBytes(0)));
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

/// stderr as the terminal of forced bars (`--progress bar`), whatever it
/// is: the control sequences a terminal gets (carriage return, erase line
/// `ESC[2K`, cursor moves `ESC[nA`…), `COLUMNS` columns (80 when unset).
#[derive(Debug)]
struct ForcedTerm {
    width: u16,
}

impl ForcedTerm {
    fn new() -> ForcedTerm {
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse().ok())
            .filter(|w| *w > 0)
            .unwrap_or(80);
        ForcedTerm { width }
    }

    fn cursor(&self, n: usize, code: char) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.write_str(&format!("\x1b[{n}{code}"))
    }
}

impl TermLike for ForcedTerm {
    fn width(&self) -> u16 {
        self.width
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'A')
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'B')
    }
    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'C')
    }
    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'D')
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        self.write_str(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        io::stderr().lock().write_all(s.as_bytes())
    }
    fn clear_line(&self) -> io::Result<()> {
        self.write_str("\r\x1b[2K")
    }
    fn flush(&self) -> io::Result<()> {
        io::stderr().flush()
    }
}
