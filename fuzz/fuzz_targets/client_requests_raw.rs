//! Client requests as raw protobuf bytes: frames of (method, length, bytes), each decoded as
//! the gRPC server decodes that method's request, checked as its handler checks it, and
//! applied to the store. See FUZZING.md.
#![no_main]

use cairn_fuzz::{frames, with_session, Method};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    with_session(async |session| {
        for (selector, bytes) in frames(data).take(64) {
            session.call(Method::from_byte(selector), bytes).await;
        }
    });
});
