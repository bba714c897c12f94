//! Flows across services: contacts -> outbox -> scoring.
#![allow(unreachable_pub)]

mod auth;
mod journey;
mod mtls;
mod scoring_flow;
