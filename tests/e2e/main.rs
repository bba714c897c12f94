//! Flows across services: contacts -> outbox -> scoring.
#![allow(unreachable_pub)]

mod journey;
mod scoring_flow;
