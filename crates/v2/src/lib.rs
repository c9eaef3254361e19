//! The Open Inference Protocol (KServe V2, with Triton's extensions), transport-independent.
//!
//! It owns the protocol's data: the gRPC messages and service stubs generated from
//! `proto/grpc_service.proto` (Triton's field numbers) and `proto/health.proto`, the
//! conversions between core [`Tensor`](inference_engine_core::tensor::Tensor)s and every wire
//! form the protocol allows (JSON nested or flat, raw little-endian bytes, typed protobuf
//! contents), and the REST request and response bodies with the binary tensor extension. The
//! HTTP and gRPC endpoints themselves live in the server crate; this crate never depends on
//! axum, a database or the registry.
//!
//! Layout:
//! - [`proto`]: the generated `inference` and `grpc.health.v1` messages, clients and servers.
//! - [`wire`]: tensor elements ⇄ JSON, raw bytes and typed contents; `WireError`.
//! - [`rest`]: the REST infer request and response, including `Inference-Header-Content-Length`
//!   framing and `binary_data` outputs.

pub mod proto;
pub mod rest;
pub mod wire;

pub use wire::WireError;
