//! Polling payloads: both decoders agree item by item and never panic; a body made only of good
//! items survives encode -> decode.
#![no_main]

use bytes::Bytes;
use chatwire_protocol::engine::payload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let copied: Vec<_> = payload::decode(data).collect();
    let shared: Vec<_> = payload::decode_bytes(Bytes::copy_from_slice(data)).collect();
    assert_eq!(copied, shared);
    if let Ok(packets) = copied.into_iter().collect::<Result<Vec<_>, _>>() {
        let mut out = Vec::new();
        let n = payload::encode(&packets, usize::MAX, &mut out);
        assert_eq!(n, packets.len());
        let back: Result<Vec<_>, _> = payload::decode(&out).collect();
        assert_eq!(back.as_ref(), Ok(&packets));
    }
});
