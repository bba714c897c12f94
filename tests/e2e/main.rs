//! Flows across services: contacts -> outbox -> scoring.
#![allow(unreachable_pub)]

mod admission;
mod auth;
mod erasure;
mod journey;
mod mtls;
mod scoring_flow;
mod shutdown;
