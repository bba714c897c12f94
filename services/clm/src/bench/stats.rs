//! Latency samples of one measured run and what is reported from them.

use std::collections::BTreeMap;
use std::time::Duration;

/// What one worker saw: latencies of the calls that succeeded, and failures by status code.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    micros: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

impl Samples {
    pub(crate) fn ok(&mut self, latency: Duration) {
        self.micros
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    pub(crate) fn failed(&mut self, code: tonic::Code) {
        *self.errors.entry(format!("{code:?}")).or_default() += 1;
    }

    pub(crate) fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
    }

    /// The summary of a run that lasted `elapsed`.
    pub(crate) fn summary(mut self, name: &str, elapsed: Duration) -> Summary {
        self.micros.sort_unstable();
        let quantile = |q: f64| -> f64 {
            if self.micros.is_empty() {
                return 0.0;
            }
            let rank = ((self.micros.len() as f64) * q).ceil() as usize;
            f64::from(self.micros[rank.clamp(1, self.micros.len()) - 1]) / 1000.0
        };
        Summary {
            name: name.to_owned(),
            calls: self.micros.len() as u64,
            per_second: self.micros.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: quantile(0.50),
            p90_ms: quantile(0.90),
            p99_ms: quantile(0.99),
            p999_ms: quantile(0.999),
            errors: self.errors,
        }
    }
}

/// One row of a benchmark's table.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Summary {
    pub(crate) name: String,
    pub(crate) calls: u64,
    pub(crate) per_second: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) errors: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_and_errors_are_counted_by_code() {
        let mut samples = Samples::default();
        for ms in 1..=1000u64 {
            samples.ok(Duration::from_millis(ms));
        }
        let mut more = Samples::default();
        more.failed(tonic::Code::ResourceExhausted);
        more.failed(tonic::Code::ResourceExhausted);
        samples.merge(more);
        let s = samples.summary("x", Duration::from_secs(2));
        assert_eq!(s.calls, 1000);
        assert_eq!(s.per_second, 500.0);
        assert_eq!(
            (s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms),
            (500.0, 900.0, 990.0, 999.0)
        );
        assert_eq!(s.errors["ResourceExhausted"], 2);
        let empty = Samples::default().summary("none", Duration::from_secs(1));
        assert_eq!((empty.calls, empty.p99_ms), (0, 0.0));
    }
}
