//! Socket.IO text packets through the server decoder: no panic, no stack overflow on deep JSON,
//! and a complete packet re-encodes to text that decodes to the same packet.
#![no_main]

use chatwire_protocol::config::SocketConfig;
use chatwire_protocol::socket::{Decoder, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(&SocketConfig::default());
    if let Ok(Some(packet)) = decoder.decode_text(data) {
        let mut out = Vec::new();
        encode(&packet, &mut out);
        let mut again = Decoder::new(&SocketConfig::default());
        assert_eq!(again.decode_text(&out).ok().flatten().as_ref(), Some(&packet));
    }
});
