//! Durations on the command line (`nightly --time-limit`, `live --time-limit`, `shrink
//! --time-budget`, `bench --duration`): one parser for all of them, used as clap's value parser so
//! that a bad duration is a usage error naming its flag.
//!
//! The units are humantime's (`500ms`, `90s`, `30m`, `1h30m`, `1h 30m`, `2.5s`, `5min`, `1day`, ...):
//! a maintained parser whose forms users know from other tools, where two hand-written ones here
//! each knew a different subset. A bare number is seconds (`90`, `2.5`), as both hand-written
//! parsers took it and humantime does not (it asks for a unit).

use std::time::Duration;

/// Parses a duration: humantime's forms, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{s:?} is not a number of seconds a duration can have"));
    }
    humantime::parse_duration(s).map_err(|e| match e {
        // humantime's message lists the units itself.
        humantime::DurationError::UnknownUnit { .. } => e.to_string(),
        _ => format!("{e} (use e.g. 90s, 30m, 1h30m, 500ms)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forms the help texts, README.md and tests/ use, and the bare seconds both earlier
    /// parsers took.
    #[test]
    fn the_documented_forms_parse() {
        let cases = [
            ("90s", 90_000),
            ("30m", 1_800_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("500ms", 500),
            ("1500ms", 1_500),
            ("0s", 0),
            ("60s", 60_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("5min", 300_000),
            ("2.5s", 2_500),
            ("90", 90_000),
            ("2.5", 2_500),
            ("0", 0),
            (" 20s ", 20_000),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn nonsense_is_refused() {
        for text in ["", "soon", "-5", "-5s", "inf", "NaN", "5 parsecs", "1e400"] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
    }
}
