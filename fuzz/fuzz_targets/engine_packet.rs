//! Engine.IO text packets: decoding never panics, and whatever decodes re-encodes to something
//! that decodes to the same packet.
#![no_main]

use chatwire_protocol::engine::packet::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Packet::decode_text(data) {
        let again = Packet::decode_text(&packet.to_text());
        assert_eq!(again.as_ref(), Ok(&packet));
    }
});
