//! Code generated at build time from `proto/*.proto` (see `build.rs`).

#[allow(
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod inference {
    tonic::include_proto!("inference");
}

#[allow(
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}
