//! The Open Inference Protocol (KServe V2, with Triton's extensions), transport-independent.
//!
//! It owns the protocol's data: the gRPC messages and service stubs generated from
//! `proto/grpc_service.proto` (Triton's field numbers) and `proto/health.proto`, the
//! conversions between core [`Tensor`](inference_engine_core::tensor::Tensor)s and every wire
//! form the protocol allows (JSON nested or flat, raw little-endian bytes, typed protobuf
//! contents), and the REST request and response bodies with the binary tensor extension. The
//! HTTP and gRPC endpoints themselves live in the server crate; this crate never depends on
//! axum, a database or the registry. It also owns the client side: the `remote_v2` model
//! backend, which runs a model on another protocol server.
//!
//! Layout:
//! - [`codec`]: the services' protobuf codec (undecodable messages are `INVALID_ARGUMENT`).
//! - [`proto`]: the generated `inference` and `grpc.health.v1` messages, clients and servers.
//! - [`wire`]: tensor elements ⇄ JSON, raw bytes and typed contents; `WireError`.
//! - [`remote`]: `RemoteV2Connector`, the `remote_v2` backend (pool, retries, circuit breaker).
//! - [`rest`]: the REST infer request and response, including `Inference-Header-Content-Length`
//!   framing and `binary_data` outputs.

pub mod codec;
pub mod proto;
pub mod remote;
pub mod rest;
pub mod wire;

pub use remote::RemoteV2Connector;
pub use wire::WireError;
