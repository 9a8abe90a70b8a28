//! Generates Rust code for etcd's API (`proto/*.proto`) and Cairn's internal Raft payload.
//! The served API also gets a file descriptor set, so gRPC reflection works without .proto files.

use std::{env, path::PathBuf};

const API_PROTOS: &[&str] = &[
    "proto/kv.proto",
    "proto/auth.proto",
    "proto/rpc.proto",
    "proto/v3lock.proto",
    "proto/v3election.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc keeps the build free of a system protoc.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    env::set_var("PROTOC", protoc);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    // Services use Cairn's codec: prost's, with smaller per-RPC buffers (see `proto::Codec`).
    tonic_prost_build::configure()
        .codec_path("crate::proto::Codec")
        .file_descriptor_set_path(out_dir.join("etcd_api_descriptor.bin"))
        .compile_protos(API_PROTOS, &["proto"])?;

    // proto3's JSON mapping for the JSON gateway, with the proto's own field names in
    // output (`create_revision`, `ID`) as etcd's gateway writes them; both spellings read,
    // and unknown fields ignored, as etcd's gateway does.
    let descriptors = std::fs::read(out_dir.join("etcd_api_descriptor.bin"))?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[
            ".mvccpb",
            ".authpb",
            ".etcdserverpb",
            ".v3lockpb",
            ".v3electionpb",
        ])?;

    // A directory of its own: this run also regenerates the imported etcd packages, without
    // services, and must not overwrite the files above.
    let internal_dir = out_dir.join("internal");
    std::fs::create_dir_all(&internal_dir)?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(false)
        .out_dir(&internal_dir)
        .compile_protos(&["proto/raft_internal.proto"], &["proto"])?;

    // The peer API, with its service; the etcd packages it regenerates are not used.
    let peer_dir = out_dir.join("peer");
    std::fs::create_dir_all(&peer_dir)?;
    tonic_prost_build::configure()
        .codec_path("crate::proto::Codec")
        .out_dir(&peer_dir)
        .compile_protos(&["proto/raft_peer.proto"], &["proto"])?;

    // etcd's own on-disk types (WAL, .snap, its Raft payloads), read when taking over an etcd
    // member's data directory (`etcd_data`); a directory of its own, as above.
    let etcd_dir = out_dir.join("etcd");
    std::fs::create_dir_all(&etcd_dir)?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(false)
        .out_dir(&etcd_dir)
        .compile_protos(
            &["proto/etcd_wal.proto", "proto/etcd_server.proto"],
            &["proto"],
        )?;

    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
