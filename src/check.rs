//! `dynamo check`: the checker over a history file or a run directory; writes results.json.

use clap::Args;
use dynamo_checker::{Results, check_path, summary};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `dynamo check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// A run directory (with history.jsonl) or a history file.
    path: PathBuf,
}

/// Where results.json goes for a history at `path`: the directory itself, or the file's directory.
fn results_dir(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    }
}

/// Checks the history at `path`, writes `results.json` beside it, and returns the results.
pub fn check_and_write(path: &Path) -> Result<Results, String> {
    let (results, warnings) = check_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for w in &warnings {
        eprintln!("dynamo check: warning: {w}");
    }
    let json = serde_json::to_string_pretty(&results).expect("results serialise");
    let out = results_dir(path).join("results.json");
    std::fs::write(&out, json + "\n")
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(results)
}

/// `dynamo check`: results.json to stdout and beside the history, a summary on stderr, and the
/// verdict as the exit status (0 valid, 1 anomaly, 2 unknown or error).
pub fn check(args: CheckArgs) -> Result<ExitCode, String> {
    let results = check_and_write(&args.path)?;
    outln!(
        "{}",
        serde_json::to_string_pretty(&results).expect("results serialise")
    );
    eprint!("{}", summary(&results));
    Ok(ExitCode::from(results.exit_code() as u8))
}
