//! clm-scoring: the scoring service: rule-based lead scores with decay, caps and thresholds.
#![forbid(unsafe_code)]

pub mod domain;
pub mod store;
