//! Wire formats of dates and date-times (docs/salesforce-api.md §0, "Value formats"):
//! dateTime `2013-05-20T20:49:32.000+0000`, date `1980-05-21`.
//!
//! Input is read leniently (clients send RFC 3339 with `Z`, offsets with or without a colon,
//! with or without milliseconds); output is always Salesforce's exact form.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// `2013-05-20T20:49:32.000+0000`.
pub fn format_datetime(dt: DateTime<Utc>) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// `1980-05-21`.
pub fn format_date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Parses a dateTime value as clients send it in JSON bodies and query parameters.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Utc.from_utc_datetime(&naive));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|naive| Utc.from_utc_datetime(&naive))
}

/// Parses a date value; a dateTime is accepted and cut to its (UTC) date.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d);
    }
    parse_datetime(s).map(|dt| dt.date_naive())
}

/// Normalises a stored dateTime string to the wire form (used when seeding records).
pub fn normalize_datetime(s: &str) -> Option<String> {
    parse_datetime(s).map(format_datetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_salesforce() {
        let dt = parse_datetime("2013-05-20T20:49:32Z").expect("parses");
        assert_eq!(format_datetime(dt), "2013-05-20T20:49:32.000+0000");
    }

    #[test]
    fn reads_the_usual_spellings() {
        let want = "2024-01-02T03:04:05.000+0000";
        for s in [
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05.000Z",
            "2024-01-02T03:04:05.000+0000",
            "2024-01-02T12:04:05+09:00",
            "2024-01-02T12:04:05.000+0900",
            "2024-01-02T03:04:05",
        ] {
            assert_eq!(normalize_datetime(s).as_deref(), Some(want), "{s}");
        }
        assert_eq!(
            parse_date("2024-01-02T23:00:00Z")
                .map(format_date)
                .as_deref(),
            Some("2024-01-02")
        );
        assert!(parse_date("2024-13-02").is_none());
    }
}
