//! The reports, as pure functions over facts and rollups: no tonic, no sea-orm.

pub mod acquisition;
pub mod activity;
pub mod clv;
pub mod cohorts;
pub mod fit;
pub mod funnel;
pub mod money;
pub mod nps;
pub mod periods;
pub mod rfm;
pub mod stages;

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// One day in microseconds.
pub const DAY: Micros = 86_400_000_000;

/// Where "now" comes from; tests inject a clock they control.
pub type Clock = std::sync::Arc<dyn Fn() -> Micros + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    std::sync::Arc::new(|| chrono::Utc::now().timestamp_micros())
}

/// The median of `values` (the mean of the two middle values for an even count).
pub fn median(values: &mut [i64]) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        // Halves first: no overflow for large instants.
        values[mid - 1] / 2 + values[mid] / 2 + (values[mid - 1] % 2 + values[mid] % 2) / 2
    })
}
