//! UTC timestamps in the two forms DESIGN.md fixes: ISO 8601 with `Z` in
//! JSON, `YYYYMMDD_HHMMSS` in file names. No time-zone database needed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Calendar date and time of day in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl Utc {
    pub fn now() -> Self {
        Self::from_system(SystemTime::now())
    }

    pub fn from_system(t: SystemTime) -> Self {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Self::from_unix(since.as_secs() as i64, since.subsec_millis())
    }

    pub fn from_unix(secs: i64, millis: u32) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
            millis,
        }
    }

    /// `2024-01-15T10:30:00.123Z`
    pub fn iso(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }

    /// `20240115_103000`
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}_{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `2024-01-15`
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// ISO 8601 of now, the form every JSON timestamp takes.
pub fn now_iso() -> String {
    Utc::now().iso()
}

/// Seconds since the epoch, as a float: the form times take in the
/// orchestrator's database.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// ISO 8601 of a time in seconds since the epoch (millisecond precision).
pub fn iso_at(t: f64) -> String {
    Utc::from_unix(t.floor() as i64, ((t.fract() * 1000.0) as u32).min(999)).iso()
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff]Z`, the form this
/// crate writes.
pub fn parse_iso(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    let days = days_from_civil(y, m as u32, day as u32);
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss) as f64 + frac)
}

/// Seconds since the epoch of a date a person types: `YYYY-MM-DD` (its
/// midnight, UTC) or RFC 3339 (`2024-01-15T10:30:00Z`,
/// `2024-01-15T10:30:00.5+02:00`). The error says what was expected.
pub fn parse_date_or_rfc3339(s: &str) -> Result<f64, String> {
    let bad = || {
        format!(
            "expected a date as YYYY-MM-DD (midnight UTC) or RFC 3339 (2024-01-15T10:30:00Z, \
             2024-01-15T10:30:00+02:00), found {s:?}"
        )
    };
    let s = s.trim();
    let (date, time) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let num = |p: &str| p.parse::<u32>().map_err(|_| bad());
    let (y, m, d) = (num(y)? as i64, num(m)?, num(d)?);
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if d == 0 || d > days_in_month {
        return Err(bad());
    }
    let midnight = (days_from_civil(y, m, d) * 86_400) as f64;
    let Some(time) = time else { return Ok(midnight) };
    // the offset: Z, or ±HH:MM after the time
    let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else {
        let at = time.rfind(['+', '-']).ok_or_else(bad)?;
        let (c, off) = time.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (hh, mm) = off[1..].split_once(':').ok_or_else(bad)?;
        if hh.len() != 2 || mm.len() != 2 {
            return Err(bad());
        }
        let (hh, mm) = (num(hh)? as i64, num(mm)? as i64);
        if hh > 23 || mm > 59 {
            return Err(bad());
        }
        (c, sign * (hh * 3600 + mm * 60))
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let fields: Vec<&str> = hms.split(':').collect();
    let [hh, mm, ss] = fields.as_slice() else {
        return Err(bad());
    };
    if [hh, mm, ss].iter().any(|f| f.len() != 2) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let (hh, mm, ss) = (num(hh)?, num(mm)?, num(ss)?);
    if hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    let frac: f64 = if frac.is_empty() {
        0.0
    } else {
        format!("0.{frac}").parse().map_err(|_| bad())?
    };
    Ok(midnight + f64::from(hh * 3600 + mm * 60 + ss) + frac - offset as f64)
}

/// (year, month, day) to days since 1970-01-01 (Hinnant's inverse).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's
/// public-domain algorithm for the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(Utc::from_unix(0, 0).iso(), "1970-01-01T00:00:00.000Z");
        // 2024-01-15T10:30:00Z, the seed's example
        let t = Utc::from_unix(1_705_314_600, 5);
        assert_eq!(t.iso(), "2024-01-15T10:30:00.005Z");
        assert_eq!(t.compact(), "20240115_103000");
        assert_eq!(t.date(), "2024-01-15");
        // a leap day
        assert_eq!(Utc::from_unix(951_782_400, 0).date(), "2000-02-29");
        assert_eq!(Utc::from_unix(-1, 0).iso(), "1969-12-31T23:59:59.000Z");
        assert_eq!(parse_iso("2024-01-15T10:30:00.005Z"), Some(1_705_314_600.005));
        assert_eq!(parse_iso("2000-02-29T00:00:00Z"), Some(951_782_400.0));
        for secs in [0i64, 951_782_400, 1_705_314_600, 4_102_444_800] {
            assert_eq!(parse_iso(&Utc::from_unix(secs, 0).iso()), Some(secs as f64));
        }
        assert_eq!(parse_iso("yesterday"), None);
    }

    #[test]
    fn dates_people_type() {
        assert_eq!(parse_date_or_rfc3339("2024-01-15"), Ok(1_705_276_800.0));
        assert_eq!(parse_date_or_rfc3339("2024-01-15T10:30:00Z"), Ok(1_705_314_600.0));
        assert_eq!(
            parse_date_or_rfc3339("2024-01-15T10:30:00.5Z"),
            Ok(1_705_314_600.5)
        );
        assert_eq!(
            parse_date_or_rfc3339("2024-01-15T12:30:00+02:00"),
            Ok(1_705_314_600.0)
        );
        assert_eq!(
            parse_date_or_rfc3339("2024-01-15T08:00:00-02:30"),
            Ok(1_705_314_600.0)
        );
        assert_eq!(parse_date_or_rfc3339("2000-02-29"), Ok(951_782_400.0));
        for bad in [
            "",
            "yesterday",
            "2024-1-15",
            "2023-02-29",
            "2024-13-01",
            "2024-01-15T25:00:00Z",
            "2024-01-15T10:30:00",
            "2024-01-15T10:30Z",
            "2024-01-15T10:30:00+2",
            "15/01/2024",
        ] {
            let e = parse_date_or_rfc3339(bad).unwrap_err();
            assert!(
                e.contains("YYYY-MM-DD") && e.contains(&format!("{bad:?}")),
                "{bad}: {e}"
            );
        }
    }
}
