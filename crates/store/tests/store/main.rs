//! The `JobStore` contract, checked against both engines: every case runs once on a fresh
//! SQLite file and once on a fresh PostgreSQL database (`TEST_DATABASE_URL`, or the local
//! default), so the two cannot drift apart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

mod cancel;
mod claim;
mod insert;
mod lease;
mod list;
mod migrations;
mod pending;
mod retention;
mod settle;
mod submit;
