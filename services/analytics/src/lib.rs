//! clm-analytics: the numbers a business steers by, kept current on ingest.
#![forbid(unsafe_code)]

pub mod domain;
pub mod store;
