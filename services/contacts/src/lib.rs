//! clm-contacts: the contacts service: people, their interaction timeline, imports,
//! merges and erasure.
#![forbid(unsafe_code)]

pub mod domain;
pub mod store;
