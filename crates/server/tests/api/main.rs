//! HTTP API tests: the real server on port 0 against a fresh SQLite file per test.

mod auth;
mod body_limit;
mod errors;
mod health;
mod jobs;
mod predict;
