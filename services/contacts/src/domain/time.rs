//! Instants are kept as microseconds since the Unix epoch (UTC): exact, portable across
//! SQLite and PostgreSQL, and cheap to compare and index.

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

/// The current instant.
pub fn now() -> Micros {
    chrono::Utc::now().timestamp_micros()
}

/// Parses `YYYY-MM-DD` (midnight UTC) or an RFC 3339 instant.
pub fn parse(text: &str) -> Option<Micros> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

/// One day in microseconds.
pub const DAY: Micros = 86_400_000_000;
