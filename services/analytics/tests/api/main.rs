//! The analytics API over gRPC with data sets worked out by hand, on SQLite and (with
//! `CLM_TEST_DATABASE_URL`) PostgreSQL: both must give the same answers.
#![allow(unreachable_pub)]

mod helpers;

mod reports;
