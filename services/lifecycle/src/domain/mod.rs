//! The rules of the lifecycle service, free of tonic and sea-orm types.

pub mod error;
pub mod facts;
pub mod model;

pub use error::LifecycleError;

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
