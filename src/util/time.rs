//! UTC timestamps in the two forms DESIGN.md fixes: ISO 8601 with `Z` in
//! JSON, `YYYYMMDD_HHMMSS` in file names. The calendar is the `time`
//! crate's (already built for actix-web); only the formats are ours.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, UtcDateTime};

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

    /// The calendar of `secs` since the epoch; instants past the years
    /// ±9999 (no clock or stored time reaches them) stop at those bounds.
    pub fn from_unix(secs: i64, millis: u32) -> Self {
        let at = UtcDateTime::from_unix_timestamp(secs).unwrap_or(if secs < 0 {
            UtcDateTime::MIN
        } else {
            UtcDateTime::MAX
        });
        Self {
            year: i64::from(at.year()),
            month: u32::from(u8::from(at.month())),
            day: u32::from(at.day()),
            hour: u32::from(at.hour()),
            minute: u32::from(at.minute()),
            second: u32::from(at.second()),
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
    s.ends_with('Z').then(|| rfc3339_seconds(s)).flatten()
}

/// Seconds since the epoch of an RFC 3339 time (any offset, any number of
/// fraction digits).
fn rfc3339_seconds(s: &str) -> Option<f64> {
    let at = UtcDateTime::parse(s, &Rfc3339).ok()?;
    Some(at.unix_timestamp() as f64 + f64::from(at.nanosecond()) / 1e9)
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
    // RFC 3339 lets any character part the date from the time; people
    // write T or a space, and only those are taken for one
    match s.as_bytes().get(10) {
        None => midnight_of(s).ok_or_else(bad),
        Some(b'T' | b't' | b' ') => rfc3339_seconds(s).ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

/// Seconds since the epoch of the midnight (UTC) that starts `YYYY-MM-DD`.
fn midnight_of(date: &str) -> Option<f64> {
    let [y, m, d] = <[&str; 3]>::try_from(date.split('-').collect::<Vec<_>>()).ok()?;
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (
        y.parse::<i32>().ok()?,
        m.parse::<u8>().ok()?,
        d.parse::<u8>().ok()?,
    );
    let date = Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()?;
    Some(UtcDateTime::new(date, time::Time::MIDNIGHT).unix_timestamp() as f64)
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
        assert_eq!(
            parse_date_or_rfc3339(" 2024-01-15 10:30:00z "),
            Ok(1_705_314_600.0)
        );
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
            "2024-01-15X10:30:00Z",
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
