//! The nightly's progress on stderr: seeds done, failed and unknown, elapsed time, ETA and rate.
//!
//! On a terminal one line is redrawn in place (at most every [`PROGRESS_REDRAW_MS`]); elsewhere (a
//! CI log) a plain line is printed every [`PROGRESS_LINE_INTERVAL_S`], so that a log of a long
//! nightly stays short. Failures are printed above the line as they come ([`Progress::say`]).
//! stdout is left to the verdict.

use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

/// Seconds between progress lines when stderr is not a terminal.
pub const PROGRESS_LINE_INTERVAL_S: u64 = 10;
/// Milliseconds between redraws of the progress line on a terminal.
pub const PROGRESS_REDRAW_MS: u64 = 200;

/// The progress line: redrawn in place on a terminal, a line every few seconds elsewhere (a CI log).
pub(super) struct Progress {
    tty: bool,
    total: usize,
    start: Instant,
    last: Instant,
    drawn: bool,
}

/// `1h05m`, `2m30s` or `4.2s`: the elapsed time and ETA, as precise as a glance needs.
fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

impl Progress {
    /// A progress line for `total` seeds, started now.
    pub(super) fn new(total: usize) -> Progress {
        let now = Instant::now();
        Progress {
            tty: std::io::stderr().is_terminal(),
            total,
            start: now,
            last: now,
            drawn: false,
        }
    }

    fn text(&self, done: usize, failed: usize, other: usize) -> String {
        let elapsed = self.start.elapsed();
        let eta = if done > 0 {
            let per = elapsed.as_secs_f64() / done as f64;
            fmt_duration(Duration::from_secs_f64(per * (self.total - done) as f64))
        } else {
            "?".to_owned()
        };
        let rate = done as f64 * 60.0 / elapsed.as_secs_f64().max(1e-3);
        format!(
            "{done}/{} seeds, {failed} failed, {other} unknown/error, {} elapsed, ETA {eta}, {rate:.0} seeds/min",
            self.total,
            fmt_duration(elapsed)
        )
    }

    /// Updates the line; `force` prints even between intervals.
    pub(super) fn update(&mut self, done: usize, failed: usize, other: usize, force: bool) {
        let now = Instant::now();
        let mut err = std::io::stderr().lock();
        if self.tty {
            if !force && now - self.last < Duration::from_millis(PROGRESS_REDRAW_MS) {
                return;
            }
            let width = 24;
            let filled = (done * width).checked_div(self.total).unwrap_or(width);
            let _ = write!(
                err,
                "\r\x1b[2K[{}{}] {}",
                "#".repeat(filled),
                ".".repeat(width - filled),
                self.text(done, failed, other)
            );
            self.drawn = true;
        } else {
            if !force && now - self.last < Duration::from_secs(PROGRESS_LINE_INTERVAL_S) {
                return;
            }
            let _ = writeln!(err, "nightly: {}", self.text(done, failed, other));
        }
        let _ = err.flush();
        self.last = now;
    }

    /// Prints a line above the progress line.
    pub(super) fn say(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty && self.drawn {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{line}");
    }

    /// Ends the line on a terminal, so that what follows starts on a line of its own.
    pub(super) fn finish(&mut self) {
        if self.tty && self.drawn {
            let _ = writeln!(std::io::stderr());
        }
    }
}
