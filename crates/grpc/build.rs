//! Generates the message types, servers and clients from `proto/llama_stack/v1/*.proto` with
//! protox (a protobuf compiler in Rust, so no `protoc` is needed) and tonic-prost-build, and
//! writes the descriptor set that server reflection and the compatibility guard read.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let api_dir = root.join("llama_stack/v1");
    // Every file in the folder, so adding an API needs no change here.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&api_dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", api_dir.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let mut compiler = protox::Compiler::new([&root])?;
    // Imports (google/protobuf/struct.proto) travel along, so reflection clients can resolve
    // every type; source info carries the proto comments into the generated Rust docs.
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;
    let descriptors = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("llama_stack_descriptor.binpb"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
