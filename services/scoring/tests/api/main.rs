//! The scoring API end to end over gRPC: SQLite with the in-process cache, and PostgreSQL
//! with Redis (when `CLM_TEST_DATABASE_URL` and `CLM_TEST_REDIS_URL` are set).
#![allow(unreachable_pub)]

mod helpers;

mod cache;
mod migrations;
mod models;
mod scores;
