//! The Redis adapters: the `JobQueue` port on Redis Streams (one consumer group, idle-time
//! reclaim as the visibility timeout, `XACK` + `XDEL` on completion, delayed retries in a sorted
//! set) and the distributed `RateLimiter` (GCRA in Lua). It depends on `core` and nothing
//! above it: no server, app or store types, and no other crate talks to Redis.
//!
//! The queue is transport, not truth: the job store decides whether a delivered job may run, so
//! this crate promises at-least-once delivery and never that a job is handed out only once.
//!
//! Layout:
//! - [`config`]: `RedisQueueConfig` (URL, key prefix, consumer name, timeouts) and the key names.
//! - [`limiter`]: `RedisRateLimiter`, limits shared by every server process (fails open).
//! - [`queue`]: `RedisJobQueue`, the `JobQueue` implementation.
//! - `connection`: the shared `ConnectionManager`, the dedicated blocking-read connection, error
//!   classification and password-free error messages.
//! - `scripts`: the Lua scripts (schedule a delayed job, promote due ones, extend owned
//!   deliveries) and why they read Redis's clock.

pub mod config;
mod connection;
pub mod limiter;
pub mod queue;
mod scripts;

pub use config::{CONSUMER_GROUP, RedisQueueConfig};
pub use limiter::RedisRateLimiter;
pub use queue::RedisJobQueue;
