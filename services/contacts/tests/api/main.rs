//! The contacts API, end to end over gRPC, on SQLite and (when configured) PostgreSQL.
#![allow(unreachable_pub)]

mod helpers;

mod contacts;
mod import_merge;
mod interactions;
mod list;
mod serving;
