//! HTTP API tests: the real server on port 0 against a fresh SQLite file per test.

// Test helpers fail the test at the line that broke; that is what unwrap is for here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod async_jobs;
mod auth;
mod body_limit;
mod deploy;
mod docs;
mod edge;
mod errors;
mod families;
mod health;
mod jobs;
mod large_inputs;
mod media;
mod metrics;
mod models;
mod openapi;
mod outages;
mod pipelines;
mod playground;
mod predict;
mod ratelimit;
mod serving;
mod v2;
