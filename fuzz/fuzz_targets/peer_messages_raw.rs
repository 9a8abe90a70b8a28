//! Peer messages as raw bytes: frames of (kind, length, bytes), each decoded as the peer API
//! (or the peer client, for answers) decodes it; forwarded proposals and appended entries
//! are applied to the store unchecked, as the leader's state machine would. See FUZZING.md.
#![no_main]

use cairn_fuzz::{frames, with_session, PeerFrame};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    with_session(async |session| {
        for (selector, bytes) in frames(data).take(64) {
            session.peer(PeerFrame::from_byte(selector), bytes).await;
        }
    });
});
