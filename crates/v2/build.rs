//! Compiles the protocol's `.proto` files with the `protoc` shipped inside
//! `protoc-bin-vendored` (no system protoc, nothing downloaded).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    // `bytes` fields as `bytes::Bytes`: raw tensor contents are handed on without copies.
    config.bytes(["."]);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // A message that does not decode is INVALID_ARGUMENT, not prost's INTERNAL.
        .codec_path("crate::codec::ProtobufCodec")
        .compile_with_config(
            config,
            &["proto/grpc_service.proto", "proto/health.proto"],
            &["proto"],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
