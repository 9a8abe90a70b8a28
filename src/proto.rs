//! Generated code for etcd's wire API (`proto/`), plus Cairn's internal Raft payload.
//! Package names are etcd's, so `etcdserverpb::KvServer` serves `etcdserverpb.KV`.

#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// Cairn's Raft log payload: a batch of write requests and their results.
pub mod cairnraftpb {
    include!(concat!(env!("OUT_DIR"), "/internal/cairnraftpb.rs"));
}

/// Cairn's peer API: Raft's messages and requests forwarded to the leader.
pub mod cairnpeerpb {
    include!(concat!(env!("OUT_DIR"), "/peer/cairnpeerpb.rs"));
}

/// Descriptor set of the served API, for gRPC reflection.
pub const API_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("etcd_api_descriptor");
