//! The committed gRPC code (`transports/src/grpc/switchyard.v1.rs`) is what
//! `proto/switchyard.proto` generates today. The code is committed rather than
//! generated in a build script so that building the server compiles no protobuf
//! compiler (docs/protocol.md, "gRPC"); this test runs one (protox: pure Rust, no
//! `protoc`) and fails when the two differ.
//!
//! After changing the proto: `SWITCHYARD_BLESS=1 cargo test -p switchyard-transports
//! --test grpc_proto` writes the new code.

use std::path::Path;

#[test]
fn generated_grpc_code_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let fds = protox::compile([root.join("proto/switchyard.proto")], [root.join("proto")])
        .expect("the proto compiles");
    let out = std::env::temp_dir().join(format!("switchyard-grpc-gen-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("temp dir");
    tonic_prost_build::configure()
        .build_transport(false)
        .bytes(".")
        .out_dir(&out)
        .compile_fds(fds)
        .expect("code generation");
    let fresh = std::fs::read_to_string(out.join("switchyard.v1.rs")).expect("generated file");
    let _ = std::fs::remove_dir_all(&out);
    let committed_path = root.join("transports/src/grpc/switchyard.v1.rs");
    if std::env::var_os("SWITCHYARD_BLESS").is_some() {
        std::fs::write(&committed_path, &fresh).expect("write the generated code");
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "transports/src/grpc/switchyard.v1.rs is stale: regenerate it with \
         SWITCHYARD_BLESS=1 cargo test -p switchyard-transports --test grpc_proto"
    );
}
