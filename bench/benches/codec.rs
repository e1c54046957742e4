//! Protocol codec benches: chatwire's decode/encode paths beside a naive serde_json baseline
//! (a `String` per frame, `serde_json::Value`), measured in the same run.
//!
//! Groups: `proto/decode_typed` (the server's hot path: a `message:send` frame decoded with
//! `RawEvent` and its payload deserialized into the server's typed `SendPayload`, against serde_json
//! doing the same work: `Value` of the data, validate, take the name, `from_value` into the same
//! struct), `proto/decode_packet` (the generic decode into a value tree: chatwire's
//! `simd_json::OwnedValue` rows `chatwire_value/*` against `serde_json::Value` rows
//! `serde_json_value/*`), `proto/encode_packet`, `proto/polling_payload`. After criterion's report
//! a short summary measures each pair again with a plain loop (median of 31 samples that
//! alternate between the two sides) and prints the ratio baseline / chatwire.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatwire::chat::payload::SendPayload;
use chatwire_protocol::config::SocketConfig;
use chatwire_protocol::engine::packet::Packet as EnginePacket;
use chatwire_protocol::engine::payload;
use chatwire_protocol::json::{self, Value};
use chatwire_protocol::socket::decoder::RESERVED_EVENTS;
use chatwire_protocol::socket::packet::{Packet, encode_event_suffix};
use chatwire_protocol::socket::{Decoder, RawEvent, encode, encode_event_prefix};
use criterion::{BatchSize, Criterion, criterion_group};

/// A typical client `message:send` frame (~200 bytes).
const MESSAGE_SEND: &str = r#"42/chat,["message:send",{"conversationId":123,"content":"Hey! Are we still on for the campaign shoot tomorrow? Let me know what time works for you.","messageType":"text","tempId":1731600000000}]"#;

/// A `message:new` broadcast carrying the contract's message object.
const MESSAGE_NEW: &str = r#"42/chat,["message:new",{"id":789,"conversationId":123,"sender":{"id":456,"username":"john_doe","firstName":"John","lastName":"Doe","profileImage":"https://cdn.example.com/u/456.jpg"},"senderType":"influencer","messageType":"text","content":"Hello!","isRead":false,"createdAt":"2026-11-14T10:00:00.000Z","attachmentUrl":null,"attachmentName":null}]"#;

fn polling_body() -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..50 {
        if i > 0 {
            body.push(0x1e);
        }
        body.extend_from_slice(MESSAGE_SEND.as_bytes());
    }
    body
}

// ---- chatwire paths ----

fn ours_decode(frame: &Bytes, decoder: &mut Decoder) -> Packet {
    let EnginePacket::Message(data) = EnginePacket::decode_text_bytes(frame.clone()).unwrap()
    else {
        unreachable!()
    };
    decoder.decode_text(&data).unwrap().unwrap()
}

/// The server's hot path for a text EVENT: engine frame -> `RawEvent` (validated, no value tree)
/// -> name -> typed payload.
fn ours_typed(frame: &Bytes) -> (Option<u64>, SendPayload) {
    let EnginePacket::Message(data) = EnginePacket::decode_text_bytes(frame.clone()).unwrap()
    else {
        unreachable!()
    };
    let event = RawEvent::decode(data, 128).unwrap().unwrap();
    assert_eq!(event.name(), Some("message:send"));
    (event.id(), event.arg(0).unwrap())
}

fn ours_encode(nsp: &str, name: &str, payload: &Value, out: &mut Vec<u8>) {
    encode_event_prefix(nsp, name, out);
    json::write(payload, out);
    encode_event_suffix(out);
}

fn ours_decode_payload(body: &Bytes, decoder: &mut Decoder) -> usize {
    let mut n = 0;
    for item in payload::decode_bytes(body.clone()) {
        let EnginePacket::Message(data) = item.unwrap() else {
            unreachable!()
        };
        n += decoder
            .decode_text(&data)
            .unwrap()
            .map_or(0, |p| p.args().len());
    }
    n
}

fn ours_encode_payload(frames: &[EnginePacket], out: &mut Vec<u8>) -> usize {
    payload::encode(frames, 1_000_000, out)
}

// ---- naive baseline: String + serde_json::Value ----

/// The baseline decodes every header field as the real path does; the benches only read `data`.
#[allow(dead_code)]
struct NaivePacket {
    kind: u8,
    nsp: String,
    id: Option<u64>,
    data: serde_json::Value,
}

fn naive_decode(frame: &[u8]) -> NaivePacket {
    let text = String::from_utf8(frame.to_vec()).unwrap();
    let rest = text.strip_prefix('4').unwrap();
    let kind = rest.as_bytes()[0] - b'0';
    let mut rest = &rest[1..];
    let mut nsp = "/".to_string();
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        nsp = rest[..end].to_string();
        rest = &rest[(end + 1).min(rest.len())..];
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = (digits > 0).then(|| rest[..digits].parse().unwrap());
    let data = serde_json::from_str(&rest[digits..]).unwrap();
    NaivePacket {
        kind,
        nsp,
        id,
        data,
    }
}

/// The same work with serde_json: `Value` of the data, the reference's EVENT checks, the name,
/// then `from_value` into the same typed struct.
fn naive_typed(frame: &[u8]) -> (Option<u64>, SendPayload) {
    let mut packet = naive_decode(frame);
    let items = packet.data.as_array_mut().unwrap();
    let valid = match items.first() {
        Some(serde_json::Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
        Some(serde_json::Value::Number(_)) => true,
        _ => false,
    };
    assert!(valid);
    assert_eq!(items[0].as_str(), Some("message:send"));
    let payload = serde_json::from_value(items[1].take()).unwrap();
    (packet.id, payload)
}

fn naive_encode(nsp: &str, name: &str, payload: &serde_json::Value) -> String {
    let array = serde_json::Value::Array(vec![
        serde_json::Value::String(name.to_string()),
        payload.clone(),
    ]);
    format!("42{},{}", nsp, serde_json::to_string(&array).unwrap())
}

fn naive_decode_payload(body: &[u8]) -> usize {
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.split('\x1e')
        .map(|item| {
            naive_decode(item.as_bytes())
                .data
                .as_array()
                .map_or(0, |a| a.len() - 1)
        })
        .sum()
}

fn naive_encode_payload(frames: &[String]) -> String {
    frames.join("\x1e")
}

fn payload_of(frame: &str) -> (Value, serde_json::Value) {
    let mut decoder = Decoder::new(&SocketConfig::default());
    let ours = ours_decode(&Bytes::from(frame.to_owned()), &mut decoder).args()[0].clone();
    let naive = naive_decode(frame.as_bytes()).data[1].clone();
    (ours, naive)
}

// ---- criterion groups ----

fn decode_typed(c: &mut Criterion) {
    let mut g = c.benchmark_group("proto/decode_typed");
    let bytes = Bytes::from(MESSAGE_SEND.to_owned());
    assert_eq!(ours_typed(&bytes), naive_typed(MESSAGE_SEND.as_bytes()));
    g.bench_function("chatwire_raw/message_send", |b| {
        b.iter(|| ours_typed(black_box(&bytes)))
    });
    g.bench_function("serde_json/message_send", |b| {
        b.iter(|| naive_typed(black_box(MESSAGE_SEND.as_bytes())))
    });
    g.finish();
}

fn decode_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("proto/decode_packet");
    for (name, frame) in [("message_send", MESSAGE_SEND), ("message_new", MESSAGE_NEW)] {
        let bytes = Bytes::from(frame.to_owned());
        let mut decoder = Decoder::new(&SocketConfig::default());
        g.bench_function(format!("chatwire_value/{name}"), |b| {
            b.iter(|| ours_decode(black_box(&bytes), &mut decoder))
        });
        g.bench_function(format!("serde_json_value/{name}"), |b| {
            b.iter(|| naive_decode(black_box(frame.as_bytes())))
        });
    }
    g.finish();
}

fn encode_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("proto/encode_packet");
    for (name, frame, event) in [
        ("message_send", MESSAGE_SEND, "message:send"),
        ("message_new", MESSAGE_NEW, "message:new"),
    ] {
        let (ours, naive) = payload_of(frame);
        g.bench_function(format!("chatwire/{name}"), |b| {
            b.iter_batched_ref(
                || Vec::with_capacity(512),
                |out| ours_encode("/chat", event, black_box(&ours), out),
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("serde_json/{name}"), |b| {
            b.iter(|| naive_encode("/chat", event, black_box(&naive)))
        });
    }
    // The whole packet through the generic encoder (Packet -> text), for comparison.
    let (ours, _) = payload_of(MESSAGE_NEW);
    let packet = Packet::event("/chat", "message:new", vec![ours]);
    g.bench_function("chatwire_generic/message_new", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(512),
            |out| encode(black_box(&packet), out),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn polling_payload(c: &mut Criterion) {
    let mut g = c.benchmark_group("proto/polling_payload");
    let body = polling_body();
    let shared = Bytes::from(body.clone());
    let mut decoder = Decoder::new(&SocketConfig::default());
    g.bench_function("chatwire/decode_50", |b| {
        b.iter(|| ours_decode_payload(black_box(&shared), &mut decoder))
    });
    g.bench_function("serde_json/decode_50", |b| {
        b.iter(|| naive_decode_payload(black_box(&body)))
    });
    let frames: Vec<EnginePacket> = (0..50)
        .map(|_| EnginePacket::Message(Bytes::from_static(&MESSAGE_NEW.as_bytes()[1..])))
        .collect();
    let strings: Vec<String> = (0..50).map(|_| MESSAGE_NEW.to_owned()).collect();
    let mut out = Vec::with_capacity(16 * 1024);
    g.bench_function("chatwire/encode_50", |b| {
        b.iter(|| {
            out.clear();
            ours_encode_payload(black_box(&frames), &mut out)
        })
    });
    g.bench_function("serde_json/encode_50", |b| {
        b.iter(|| naive_encode_payload(black_box(&strings)))
    });
    g.finish();
}

// ---- ratio summary ----

/// Median nanoseconds per call of `ours` and `base`, sampled alternately (31 samples of `iters`
/// calls each) so that load from other processes hits both sides alike.
fn paired_median_ns(iters: u32, mut ours: impl FnMut(), mut base: impl FnMut()) -> (f64, f64) {
    fn sample(iters: u32, f: &mut impl FnMut()) -> f64 {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        start.elapsed().as_nanos() as f64 / f64::from(iters)
    }
    sample(iters, &mut ours);
    sample(iters, &mut base);
    // Alternate which side goes first, so neither always inherits the other's cache and
    // allocator state.
    let (mut a, mut b): (Vec<f64>, Vec<f64>) = (0..31)
        .map(|round| {
            if round % 2 == 0 {
                let x = sample(iters, &mut ours);
                (x, sample(iters, &mut base))
            } else {
                let y = sample(iters, &mut base);
                (sample(iters, &mut ours), y)
            }
        })
        .unzip();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    (a[a.len() / 2], b[b.len() / 2])
}

fn summary() {
    let mut rows: Vec<(&str, f64, f64)> = Vec::new();
    let bytes = Bytes::from(MESSAGE_SEND.to_owned());
    let (ours, naive) = paired_median_ns(
        5_000,
        || {
            black_box(ours_typed(black_box(&bytes)));
        },
        || {
            black_box(naive_typed(black_box(MESSAGE_SEND.as_bytes())));
        },
    );
    rows.push(("typed message_send", ours, naive));
    for (name, frame) in [
        ("value message_send", MESSAGE_SEND),
        ("value message_new", MESSAGE_NEW),
    ] {
        let bytes = Bytes::from(frame.to_owned());
        let mut decoder = Decoder::new(&SocketConfig::default());
        let (ours, naive) = paired_median_ns(
            5_000,
            || {
                black_box(ours_decode(black_box(&bytes), &mut decoder));
            },
            || {
                black_box(naive_decode(black_box(frame.as_bytes())));
            },
        );
        rows.push((name, ours, naive));
    }
    for (name, frame, event) in [
        ("encode message_send", MESSAGE_SEND, "message:send"),
        ("encode message_new", MESSAGE_NEW, "message:new"),
    ] {
        let (ours_v, naive_v) = payload_of(frame);
        let mut out = Vec::with_capacity(512);
        let (ours, naive) = paired_median_ns(
            5_000,
            || {
                out.clear();
                ours_encode("/chat", event, black_box(&ours_v), &mut out);
                black_box(&out);
            },
            || {
                black_box(naive_encode("/chat", event, black_box(&naive_v)));
            },
        );
        rows.push((name, ours, naive));
    }
    let body = polling_body();
    let shared = Bytes::from(body.clone());
    let mut decoder = Decoder::new(&SocketConfig::default());
    let (ours, naive) = paired_median_ns(
        100,
        || {
            black_box(ours_decode_payload(black_box(&shared), &mut decoder));
        },
        || {
            black_box(naive_decode_payload(black_box(&body)));
        },
    );
    rows.push(("decode polling x50", ours, naive));
    let frames: Vec<EnginePacket> = (0..50)
        .map(|_| EnginePacket::Message(Bytes::from_static(&MESSAGE_NEW.as_bytes()[1..])))
        .collect();
    let strings: Vec<String> = (0..50).map(|_| MESSAGE_NEW.to_owned()).collect();
    let mut out = Vec::with_capacity(16 * 1024);
    let (ours, naive) = paired_median_ns(
        1_000,
        || {
            out.clear();
            black_box(ours_encode_payload(black_box(&frames), &mut out));
        },
        || {
            black_box(naive_encode_payload(black_box(&strings)));
        },
    );
    rows.push(("encode polling x50", ours, naive));

    println!();
    println!(
        "codec summary (median of 31 alternating samples, ns per op; ratio = serde_json / chatwire)"
    );
    println!(
        "typed = hot path: decode + message:send payload into SendPayload (chatwire: RawEvent, \
         no value tree); value = decode into a generic value tree (OwnedValue / serde_json::Value)"
    );
    println!(
        "{:<22} {:>12} {:>12} {:>8}",
        "case", "chatwire", "serde_json", "ratio"
    );
    for (name, ours, naive) in rows {
        println!(
            "{name:<22} {ours:>12.1} {naive:>12.1} {:>7.2}x",
            naive / ours
        );
    }
    println!(
        "message:send frame: {} bytes; bar (typed message_send row): <= 1000 ns and faster than serde_json",
        MESSAGE_SEND.len()
    );
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode_typed, decode_packet, encode_packet, polling_payload
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let listing = std::env::args().any(|a| a == "--list" || a == "--test");
    if !listing {
        summary();
    }
}
