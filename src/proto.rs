//! Generated code for etcd's wire API (`proto/`), plus Cairn's internal Raft payload.
//! Package names are etcd's, so `etcdserverpb::KvServer` serves `etcdserverpb.KV`.
//! Calls nothing else in Cairn.

#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

/// Cairn's Raft log payload: a batch of write requests and their results.
pub mod cairnraftpb {
    include!(concat!(env!("OUT_DIR"), "/internal/cairnraftpb.rs"));
}

/// Cairn's peer API: Raft's messages and requests forwarded to the leader.
pub mod cairnpeerpb {
    include!(concat!(env!("OUT_DIR"), "/peer/cairnpeerpb.rs"));
}

/// etcd's on-disk and Raft-log types, read (never written) when Cairn takes over an etcd
/// member's data directory (`etcd_data`). etcd's `etcdserverpb` payloads are package
/// `etcdraftpb` here; the API messages they carry are Cairn's [`etcdserverpb`] types.
pub mod etcd {
    pub use super::{authpb, etcdserverpb, mvccpb};
    pub mod raftpb {
        include!(concat!(env!("OUT_DIR"), "/etcd/raftpb.rs"));
    }
    pub mod walpb {
        include!(concat!(env!("OUT_DIR"), "/etcd/walpb.rs"));
    }
    pub mod membershippb {
        include!(concat!(env!("OUT_DIR"), "/etcd/membershippb.rs"));
    }
    pub mod etcdraftpb {
        include!(concat!(env!("OUT_DIR"), "/etcd/etcdraftpb.rs"));
    }
}

/// Descriptor set of the served API, for gRPC reflection.
pub const API_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("etcd_api_descriptor");

/// prost's codec with 1 KiB starting buffers instead of tonic's 8 KiB. Every RPC allocates
/// one to decode its request and one to encode its reply; etcd's messages are mostly a few
/// hundred bytes, and at tens of thousands of RPCs a second the 8 KiB ones kept the
/// allocator reaching for fresh pages. Larger messages grow the buffer as needed.
pub struct Codec<T, U>(tonic_prost::ProstCodec<T, U>);

const CODEC_BUFFER_BYTES: usize = 1024;
/// tonic's default: how much a stream's ready messages may fill before they are sent.
const CODEC_YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(tonic_prost::ProstCodec::default())
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = tonic_prost::ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstCodec::<T, U>::raw_encoder(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<T, U>::raw_decoder(buffer_settings())
    }
}

fn buffer_settings() -> tonic::codec::BufferSettings {
    tonic::codec::BufferSettings::new(CODEC_BUFFER_BYTES, CODEC_YIELD_THRESHOLD_BYTES)
}
