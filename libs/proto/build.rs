//! Compiles `proto/clm/**` with protox (pure Rust, no `protoc`) and tonic's generator, and
//! writes the encoded file descriptor set for server reflection.

use std::path::PathBuf;

use prost::Message;

const FILES: &[&str] = &[
    "clm/common/v1/common.proto",
    "clm/common/v1/events.proto",
    "clm/contacts/v1/contacts.proto",
    "clm/scoring/v1/scoring.proto",
    "clm/lifecycle/v1/lifecycle.proto",
    "clm/analytics/v1/analytics.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    // protox prints no rerun-if-changed of its own.
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(FILES, [&root])?;
    // compile_fds ignores file_descriptor_set_path, so the set is written here.
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("clm_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
