//! Round trips on the protocol document's wire strings, and encode/decode properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::config::SocketConfig;
use crate::socket::decoder::Decoder;
use proptest::prelude::*;

fn decode_one(wire: &str) -> Packet {
    let mut d = Decoder::new(&SocketConfig::default());
    d.decode_text(wire.as_bytes())
        .unwrap()
        .expect("complete packet")
}

#[test]
fn documented_text_packets_round_trip() {
    let cases = [
        "0",
        "0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}",
        "4{\"message\":\"Not authorized\"}",
        "2[\"foo\"]",
        "2/admin,[\"bar\"]",
        "212[\"foo\"]",
        "3/admin,13[\"bar\"]",
        "1",
        "1/admin,",
        "2[\"hey\",\"Jude\"]",
        "2/admin,1[\"tellme\"]",
    ];
    for wire in cases {
        let p = decode_one(wire);
        let mut out = Vec::new();
        encode(&p, &mut out);
        // `1/admin,` re-encodes without the empty data, identical here.
        assert_eq!(String::from_utf8(out).unwrap(), wire, "{wire}");
    }
}

#[test]
fn decoded_fields() {
    let p = decode_one("3/admin,13[\"bar\"]");
    assert_eq!(
        (p.kind, p.nsp.as_str(), p.id),
        (PacketType::Ack, "/admin", Some(13))
    );
    assert_eq!(p.args(), &[Value::from("bar")]);
    let p = decode_one("212[\"foo\",1]");
    assert_eq!(p.event_name(), Some("foo"));
    assert_eq!(p.args(), &[Value::from(1i64)]);
    let p = decode_one("0/admin,{\"sid\":\"x\"}");
    assert_eq!(p.kind, PacketType::Connect);
    assert_eq!(p.event_name(), None);
    let p = decode_one("2[42,\"n\"]");
    assert_eq!(
        p.event_name(),
        None,
        "numeric event names have no string name"
    );
}

#[test]
fn documented_binary_packets_round_trip() {
    let mut d = Decoder::new(&SocketConfig::default());
    let wire =
        "52-/admin,[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]";
    assert_eq!(d.decode_text(wire.as_bytes()).unwrap(), None);
    assert_eq!(d.decode_binary(Bytes::from_static(&[1, 2])).unwrap(), None);
    let p = d
        .decode_binary(Bytes::from_static(&[3, 4]))
        .unwrap()
        .unwrap();
    assert_eq!(p.kind, PacketType::BinaryEvent);
    assert_eq!(p.nsp, "/admin");
    assert_eq!(
        p.attachments,
        vec![Bytes::from_static(&[1, 2]), Bytes::from_static(&[3, 4])]
    );
    assert_eq!(String::from_utf8(p.to_text()).unwrap(), wire);

    let wire = "61-15[\"bar\",{\"_placeholder\":true,\"num\":0}]";
    assert_eq!(d.decode_text(wire.as_bytes()).unwrap(), None);
    let p = d
        .decode_binary(Bytes::from_static(&[1, 2, 3, 4]))
        .unwrap()
        .unwrap();
    assert_eq!((p.kind, p.id), (PacketType::BinaryAck, Some(15)));
    assert_eq!(String::from_utf8(p.to_text()).unwrap(), wire);
    assert!(!d.is_reassembling());
}

#[test]
fn builders_write_the_documented_form() {
    assert_eq!(
        Packet::connect_ok("/admin", "oSO0OpakMV_3jnilAAAA").to_text(),
        b"0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}"
    );
    assert_eq!(
        Packet::connect_error("/", "Not authorized").to_text(),
        b"4{\"message\":\"Not authorized\"}"
    );
    assert_eq!(
        Packet::event("/", "foo", vec![]).with_id(12).to_text(),
        b"212[\"foo\"]"
    );
    assert_eq!(
        Packet::ack("/admin", 13, vec![Value::from("bar")]).to_text(),
        b"3/admin,13[\"bar\"]"
    );
    assert_eq!(Packet::disconnect("/admin").to_text(), b"1/admin,");
    assert_eq!(Packet::connect("/", None).to_text(), b"0");
}

#[test]
fn fast_prefix_matches_the_full_encoder() {
    let mut out = Vec::new();
    encode_event_prefix("/chat", "message:new", &mut out);
    out.extend_from_slice(br#"{"id":1,"content":"a \"q\""}"#);
    encode_event_suffix(&mut out);
    assert_eq!(
        out,
        br#"42/chat,["message:new",{"id":1,"content":"a \"q\""}]"#
    );
    let decoded = decode_one(std::str::from_utf8(&out[1..]).unwrap());
    assert_eq!(decoded.event_name(), Some("message:new"));

    let mut bare = Vec::new();
    encode_event_prefix("/", "typing:stop", &mut bare);
    encode_event_suffix(&mut bare);
    assert_eq!(bare, br#"42["typing:stop"]"#);

    let mut ack = Vec::new();
    encode_ack_prefix("/chat", 7, &mut ack);
    ack.extend_from_slice(br#"{"ok":true}"#);
    encode_event_suffix(&mut ack);
    assert_eq!(ack, br#"43/chat,7[{"ok":true}]"#);
    let mut empty_ack = Vec::new();
    encode_ack_prefix("/", 3, &mut empty_ack);
    encode_event_suffix(&mut empty_ack);
    assert_eq!(empty_ack, b"433[]");
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::from(())),
        any::<bool>().prop_map(Value::from),
        (-1_000_000_000_000i64..1_000_000_000_000).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| Value::Array(Box::new(v))),
            proptest::collection::vec(("[a-z_]{1,6}", inner), 0..4).prop_map(|kv| {
                let mut o = simd_json::owned::Object::default();
                for (k, v) in kv {
                    o.insert(k, v);
                }
                Value::Object(Box::new(o))
            }),
        ]
    })
}

fn arb_nsp() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[a-z0-9_-]{1,10}"]
}

proptest! {
    #[test]
    fn event_decode_inverts_encode(
        nsp in arb_nsp(),
        name in "[a-z:]{1,16}".prop_filter("reserved", |n| !crate::socket::decoder::RESERVED_EVENTS.contains(&n.as_str())),
        args in proptest::collection::vec(arb_value(), 0..4),
        id in proptest::option::of(any::<u64>()),
    ) {
        let mut p = Packet::event(&nsp, &name, args);
        p.id = id;
        prop_assert_eq!(decode_one(std::str::from_utf8(&p.to_text()).unwrap()), p);
    }

    #[test]
    fn ack_and_connect_decode_inverts_encode(nsp in arb_nsp(), args in proptest::collection::vec(arb_value(), 0..4), id in any::<u64>(), token in ".{0,20}") {
        let p = Packet::ack(&nsp, id, args);
        prop_assert_eq!(decode_one(std::str::from_utf8(&p.to_text()).unwrap()), p);
        let mut auth = simd_json::owned::Object::default();
        auth.insert("token".to_owned(), Value::from(token));
        let c = Packet::connect(&nsp, Some(Value::Object(Box::new(auth))));
        prop_assert_eq!(decode_one(std::str::from_utf8(&c.to_text()).unwrap()), c);
    }

    #[test]
    fn binary_decode_inverts_encode(nsp in arb_nsp(), blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 1..=10), id in proptest::option::of(0u64..1000)) {
        let mut items = vec![Value::from("upload")];
        for n in 0..blobs.len() {
            let mut o = simd_json::owned::Object::default();
            o.insert("_placeholder".to_owned(), Value::from(true));
            o.insert("num".to_owned(), Value::from(n as u64));
            items.push(Value::Object(Box::new(o)));
        }
        let p = Packet {
            kind: PacketType::BinaryEvent,
            nsp,
            id,
            data: Some(Value::Array(Box::new(items))),
            attachments: blobs.into_iter().map(Bytes::from).collect(),
        };
        let mut d = Decoder::new(&SocketConfig::default());
        prop_assert_eq!(d.decode_text(&p.to_text()).unwrap(), None);
        let mut out = None;
        for a in &p.attachments {
            prop_assert!(out.is_none());
            out = d.decode_binary(a.clone()).unwrap();
        }
        prop_assert_eq!(out, Some(p));
    }
}
