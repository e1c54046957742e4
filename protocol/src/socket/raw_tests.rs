#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::config::SocketConfig;
use crate::socket::decoder::Decoder;
use crate::socket::packet::{Packet, encode};
use proptest::prelude::*;
use serde::Deserialize;

const DEPTH: usize = 128;

fn raw(s: &str) -> Result<Option<RawEvent>, SocketError> {
    RawEvent::decode(Bytes::copy_from_slice(s.as_bytes()), DEPTH)
}

fn full(s: &str) -> Result<Option<Packet>, SocketError> {
    Decoder::new(&SocketConfig::default()).decode_text(s.as_bytes())
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Send {
    conversation_id: i64,
    content: String,
    temp_id: Option<u64>,
}

#[test]
fn message_send_header_name_and_typed_payload() {
    let e = raw(
        r#"2/chat,17["message:send",{"conversationId":123,"content":"hi \"you\"","tempId":5}]"#,
    )
    .unwrap()
    .unwrap();
    assert_eq!(e.nsp(), "/chat");
    assert_eq!(e.id(), Some(17));
    assert_eq!(e.name(), Some("message:send"));
    assert_eq!(e.arg_count(), 1);
    assert_eq!(
        e.arg::<Send>(0).unwrap(),
        Send {
            conversation_id: 123,
            content: "hi \"you\"".into(),
            temp_id: Some(5)
        }
    );
    assert_eq!(e.arg::<Send>(1), Err(SocketError::MissingArgument(1)));
    assert!(matches!(
        e.arg::<Vec<u8>>(0),
        Err(SocketError::ArgumentType { index: 0, .. })
    ));
}

#[test]
fn default_namespace_no_id_many_args_and_whitespace() {
    let e = raw("2[ \"hello\" , 1 , [2, \"a,]\"] ,{\"k\":\"}\"} , null ]")
        .unwrap()
        .unwrap();
    assert_eq!(e.nsp(), "/");
    assert_eq!(e.id(), None);
    assert_eq!(e.name(), Some("hello"));
    let args: Vec<&[u8]> = (0..e.arg_count())
        .map(|i| e.arg_bytes(i).unwrap())
        .collect();
    assert_eq!(
        args,
        [
            &b"1"[..],
            &b"[2, \"a,]\"]"[..],
            &b"{\"k\":\"}\"}"[..],
            &b"null"[..]
        ]
    );
    assert_eq!(e.arg::<(u8, String)>(1).unwrap(), (2, "a,]".to_owned()));
}

#[test]
fn escaped_and_numeric_names() {
    let e = raw(r#"2["a\u0062c",1]"#).unwrap().unwrap();
    assert_eq!(e.name(), Some("abc"));
    let e = raw(r#"2[42,"x"]"#).unwrap().unwrap();
    assert_eq!(e.name(), None);
    assert_eq!(e.arg::<String>(0).unwrap(), "x");
    let e = raw(r#"2["only"]"#).unwrap().unwrap();
    assert_eq!(e.arg_count(), 0);
}

#[test]
fn other_packet_types_are_left_to_the_decoder() {
    for s in [
        "0/chat,{}",
        "1/chat,",
        r#"3/chat,1["ok"]"#,
        r#"51-["f",{"_placeholder":true,"num":0}]"#,
    ] {
        assert_eq!(raw(s), Ok(None), "{s}");
    }
}

#[test]
fn malformed_events_get_the_decoders_errors() {
    let deep = format!("2{}{}", "[".repeat(200), "]".repeat(200));
    let long_nsp = format!("2/{},[\"a\"]", "n".repeat(300));
    let cases: Vec<String> = vec![
        "".into(),
        "9[\"a\"]".into(),
        "2".into(),
        "2/chat,".into(),
        "2/chat,7".into(),
        "299999999999999999999999[\"a\"]".into(),
        "2[]".into(),
        "2{}".into(),
        "2\"a\"".into(),
        "2[null]".into(),
        "2[true,1]".into(),
        "2[{},1]".into(),
        "2[\"connect\"]".into(),
        "2[\"disconnecting\",1]".into(),
        "2[\"a\",]".into(),
        "2[\"a\"".into(),
        "2[\"a\"]x".into(),
        deep,
        long_nsp,
    ];
    for s in &cases {
        let expected = full(s).expect_err(s);
        assert_eq!(raw(s).expect_err(s), expected, "{s}");
    }
    assert_eq!(raw(""), Err(SocketError::Empty));
    assert_eq!(
        raw("2[]"),
        Err(SocketError::InvalidPayload(PacketType::Event))
    );
    assert_eq!(raw("2[\"connect\"]"), Err(SocketError::ReservedEventName));
    assert!(matches!(
        raw(&format!("2{}", "[".repeat(200))),
        Err(SocketError::Json(JsonError::TooDeep { max: DEPTH }))
    ));
}

#[test]
fn invalid_utf8_in_namespace() {
    let bytes = Bytes::from_static(b"2/ch\xffat,[\"a\"]");
    let expected = Decoder::new(&SocketConfig::default())
        .decode_text(&bytes)
        .unwrap_err();
    assert_eq!(RawEvent::decode(bytes, DEPTH).unwrap_err(), expected);
    let bytes = Bytes::from_static(b"2[\"a\xff\"]");
    let expected = Decoder::new(&SocketConfig::default())
        .decode_text(&bytes)
        .unwrap_err();
    assert_eq!(RawEvent::decode(bytes, DEPTH).unwrap_err(), expected);
}

#[test]
fn arg_value_matches_the_full_decoder() {
    let s = r#"2/chat,["message:send",{"a":1,"a":2,"b":[1,2.5,"x"]},"y"]"#;
    let e = raw(s).unwrap().unwrap();
    let p = full(s).unwrap().unwrap();
    assert_eq!(e.arg_value(0, DEPTH).unwrap(), p.args()[0]);
    assert_eq!(e.arg_value(1, DEPTH).unwrap(), p.args()[1]);
}

use crate::error::JsonError;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Static(StaticNode::Null)),
        any::<bool>().prop_map(|b| Value::Static(StaticNode::Bool(b))),
        any::<i64>().prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(Value::from),
        "[a-z\"\\\\,\\[\\]{} é\n]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| Value::Array(Box::new(v))),
            prop::collection::vec(("[a-z_]{1,6}", inner), 0..4).prop_map(|kv| {
                let mut o = simd_json::owned::Object::default();
                for (k, v) in kv {
                    o.insert(k, v);
                }
                Value::Object(Box::new(o))
            }),
        ]
    })
}

proptest! {
    #[test]
    fn raw_event_agrees_with_the_decoder(
        nsp in prop_oneof![Just("/".to_owned()), "/[a-z]{1,8}"],
        id in prop::option::of(any::<u64>()),
        name in "[a-z:\"\\\\é ]{1,16}",
        args in prop::collection::vec(json_value(), 0..4),
    ) {
        let mut packet = Packet::event(&nsp, &name, args);
        packet.id = id;
        let mut text = Vec::new();
        encode(&packet, &mut text);
        let text = String::from_utf8(text).unwrap();
        let full = full(&text);
        let raw = raw(&text);
        match (full, raw) {
            (Ok(Some(p)), Ok(Some(e))) => {
                prop_assert_eq!(e.nsp(), p.nsp.as_str());
                prop_assert_eq!(e.id(), p.id);
                prop_assert_eq!(e.name(), p.event_name());
                prop_assert_eq!(e.arg_count(), p.args().len());
                for (i, v) in p.args().iter().enumerate() {
                    prop_assert_eq!(&e.arg_value(i, DEPTH).unwrap(), v);
                }
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "decoder {:?} vs raw {:?} for {}", a, b, text),
        }
    }

    #[test]
    fn arbitrary_event_text_gets_the_same_verdict(tail in "[\\[\\]{}\",:0-9a-z/ \\\\]{0,40}") {
        let text = format!("2{tail}");
        match (full(&text), raw(&text)) {
            (Ok(Some(p)), Ok(Some(e))) => {
                prop_assert_eq!(e.name(), p.event_name());
                prop_assert_eq!(e.arg_count(), p.args().len());
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "decoder {:?} vs raw {:?} for {}", a, b, text),
        }
    }
}

/// Whenever the one-pass check answers, the full check (simd-json tape) gives the same name and
/// element spans.
fn fast_agrees_with_full(text: &str) -> Result<bool, TestCaseError> {
    let input = text.as_bytes();
    let data = &input[1..];
    match fast(input, data, 1, DEPTH) {
        Some(found) => {
            prop_assert_eq!(Ok(found), full_check(input, data, 1, DEPTH), "{}", text);
            Ok(true)
        }
        None => Ok(false),
    }
}

#[test]
fn one_pass_check_takes_common_events_and_defers_the_rest() {
    for s in [
        r#"2["message:send",{"conversationId":123,"content":"hé \"x\" \n","tempId":-1.5}]"#,
        r#"2[7, [], {}, [null, true, false], {"a":{"b":[0]}} ]"#,
    ] {
        assert!(fast_agrees_with_full(s).unwrap(), "{s}");
    }
    for s in [
        r#"2["a",1e5]"#,
        r#"2["a","\ud800"]"#,
        r#"2["a",12345678901234567890]"#,
        r#"2["a\n"]"#,
        r#"2["connect"]"#,
        "2[\"a\",\u{c}1]",
        r#"2["a",01]"#,
        r#"2["a",1.]"#,
        r#"2["a",{"k" 1}]"#,
        r#"2["a",{1:1}]"#,
        r#"2["a",[1,]]"#,
        r#"2["a"] x"#,
        r#"2["a",tru]"#,
        r#"2["a","\x"]"#,
        "2[\"a\",\"\u{1}\"]",
    ] {
        assert!(!fast_agrees_with_full(s).unwrap(), "{s}");
    }
}

proptest! {
    #[test]
    fn one_pass_check_agrees_on_generated_events(
        name in "[a-z:\"\\\\é ]{1,16}",
        args in prop::collection::vec(json_value(), 0..4),
    ) {
        let mut text = Vec::new();
        encode(&Packet::event("/", &name, args), &mut text);
        fast_agrees_with_full(&String::from_utf8(text).unwrap())?;
    }

    #[test]
    fn one_pass_check_agrees_on_arbitrary_text(tail in "[\\[\\]{}\",:0-9a-z.eE+\\- \t\\\\]{0,40}") {
        fast_agrees_with_full(&format!("2{tail}"))?;
    }
}
