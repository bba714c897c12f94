//! Flows across services: contacts -> outbox -> scoring.
#![allow(unreachable_pub)]

mod scoring_flow;
