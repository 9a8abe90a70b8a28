//! Client requests built from structured input (`cairn_fuzz::structured`): mostly
//! well-formed, on a few keys, so that they reach deep into apply, MVCC, leases and watch.
//! Each is encoded to protobuf and goes the same way as in `client_requests_raw`.
#![no_main]

use cairn_fuzz::structured::Op;
use cairn_fuzz::with_session;

libfuzzer_sys::fuzz_target!(|ops: Vec<Op>| {
    with_session(async |session| {
        for op in ops.iter().take(64) {
            let (method, bytes) = op.encode();
            session.call(method, &bytes).await;
        }
    });
});
