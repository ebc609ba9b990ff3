//! Durations as people write them on a command line: `90s`, `15m`, `2h`,
//! `1d`, or a plain number of seconds (`90`, `0.5`). Used by the allocation
//! queues (`orquesta alloc add --time-limit 1h`) and the worker's
//! `--drain-after` / `--idle-exit`.

use std::time::Duration;

/// The longest duration accepted: a year (a time limit past that is a typo).
const LONGEST: f64 = 366.0 * 86_400.0;

/// Parses `90s`, `15m`, `2h`, `1d` or a plain number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3600.0,
        'd' => 86_400.0,
        _ => return Err(expected(raw)),
    };
    let value: f64 = number.trim().parse().map_err(|_| expected(raw))?;
    let seconds = value * scale;
    if !seconds.is_finite() || !(0.0..=LONGEST).contains(&seconds) {
        return Err(format!(
            "expected a duration between 0 and 366 days, found {raw:?}"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn expected(raw: &str) -> String {
    format!("expected a duration such as 90s, 15m, 2h or a number of seconds, found {raw:?}")
}

/// A duration the way [`parse_duration`] reads it back: `2h`, `15m`,
/// `90s`, `1.5s`.
pub fn show_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    let whole = d.subsec_nanos() == 0;
    let s = d.as_secs();
    if whole && s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if whole && s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else if whole {
        format!("{s}s")
    } else {
        format!("{secs}s")
    }
}

/// Slurm's `--time` form: `[D-]HH:MM:SS`, rounded up to a whole minute
/// (Slurm counts limits in minutes).
pub fn slurm_time(d: Duration) -> String {
    let minutes = d.as_secs().div_ceil(60).max(1);
    let (days, rest) = (minutes / 1440, minutes % 1440);
    let (h, m) = (rest / 60, rest % 60);
    if days > 0 {
        format!("{days}-{h:02}:{m:02}:00")
    } else {
        format!("{h:02}:{m:02}:00")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_forms_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 2H "), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn nonsense_says_what_was_expected() {
        for bad in ["", "h", "2w", "-5s", "1e9h", "ten minutes", "nan"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.starts_with("expected a duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn shown_durations_read_back() {
        for d in [90, 900, 7200, 61, 3660].map(Duration::from_secs) {
            assert_eq!(parse_duration(&show_duration(d)), Ok(d));
        }
        assert_eq!(show_duration(Duration::from_secs(900)), "15m");
    }

    #[test]
    fn slurm_limits_round_up_to_minutes() {
        assert_eq!(slurm_time(Duration::from_secs(90)), "00:02:00");
        assert_eq!(slurm_time(Duration::from_secs(7200)), "02:00:00");
        assert_eq!(slurm_time(Duration::from_secs(86_400 + 60)), "1-00:01:00");
        assert_eq!(slurm_time(Duration::from_secs(5)), "00:01:00");
    }
}
