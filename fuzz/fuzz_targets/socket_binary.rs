//! Socket.IO binary packets across frames. The input is split on 0x00: the first part is a text
//! frame, each later part a binary frame, except parts starting with `T`, which are text frames
//! (exercising "text while reassembling").
#![no_main]

use bytes::Bytes;
use chatwire_protocol::config::SocketConfig;
use chatwire_protocol::socket::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(&SocketConfig::default());
    let mut frames = data.split(|&b| b == 0);
    if let Some(first) = frames.next() {
        let _ = decoder.decode_text(first);
    }
    for frame in frames {
        let result = match frame.split_first() {
            Some((b'T', text)) => decoder.decode_text(text),
            _ => decoder.decode_binary(Bytes::copy_from_slice(frame)),
        };
        if let Ok(Some(packet)) = result {
            assert!(packet.attachments.len() <= 10);
        }
    }
});
