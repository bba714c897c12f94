//! The lifecycle API over gRPC on SQLite and (with `CLM_TEST_DATABASE_URL`) PostgreSQL.
#![allow(unreachable_pub)]

mod helpers;

mod migrations;
mod models;
mod segments;
mod stages;
mod watch;
