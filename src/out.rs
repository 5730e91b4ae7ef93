//! Standard output for the commands' results: `outln!` and `out!` instead of `println!` and
//! `print!` (clippy's `print_stdout`, denied in main.rs, keeps it so).
//!
//! `println!` panics when stdout is closed (`dynamo sim | head -1`). Here, once the reader is gone
//! (`BrokenPipe`), the rest of the output is dropped without a word and the command finishes its
//! work: `dynamo sim` still checks the run and writes results.json and report.html, and exits with
//! its verdict, so the exit status means what it always means. The other way, SIGPIPE's default
//! action, would kill the process at its next write: a `sim` piped to `head -1` died before it had
//! checked its run, leaving no results.json, with status 141 instead of the verdict, and
//! `dynamo live` would be killed with its cluster running.
//!
//! Any other write error (a full disk under `> file`) is said once on stderr, the rest of the
//! output is dropped, and [`failed`] makes main exit 2 (an error) where the command would have
//! exited 0: a script must not take a cut-off output for a whole one.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicU8, Ordering};

/// Stdout takes writes.
const OPEN: u8 = 0;
/// The reader has gone: writes are dropped, and that is no error.
const CLOSED: u8 = 1;
/// A write failed otherwise: writes are dropped, and the command's output is incomplete.
const FAILED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(OPEN);

/// Writes to stdout; after a broken pipe or an error, does nothing. Use `outln!` or `out!`.
pub fn write(args: fmt::Arguments<'_>) {
    if STATE.load(Ordering::Relaxed) != OPEN {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args) {
        note(&e);
    }
}

/// Flushes stdout (its buffer holds at most an unfinished line); main calls it before it exits.
pub fn flush() {
    if STATE.load(Ordering::Relaxed) != OPEN {
        return;
    }
    if let Err(e) = std::io::stdout().lock().flush() {
        note(&e);
    }
}

/// Whether a write to stdout failed other than by the reader going away.
pub fn failed() -> bool {
    STATE.load(Ordering::Relaxed) == FAILED
}

fn note(e: &std::io::Error) {
    if e.kind() == ErrorKind::BrokenPipe {
        STATE.store(CLOSED, Ordering::Relaxed);
    } else if STATE.swap(FAILED, Ordering::Relaxed) != FAILED {
        eprintln!("dynamo: cannot write to stdout: {e}");
    }
}

/// `println!` for the commands' results; see the module `out`.
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the commands' results; see the module `out`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}
