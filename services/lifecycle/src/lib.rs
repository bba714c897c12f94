//! clm-lifecycle: stages, segments, timed triggers and a resumable event stream.
#![forbid(unsafe_code)]

pub mod domain;
pub mod store;
