//! The one rule for an id a client gives (conversation, message, user): a positive integer that
//! fits `i64`, written as a JSON integer or as a string of ASCII digits (no sign, no spaces, no
//! fraction). Socket events, REST bodies, paths, query strings and dev tokens all read ids here,
//! so `"12"`, `12` and `/conversations/12` mean the same everywhere and `"+12"`, `" 12"`, `12.0`
//! are refused everywhere.

use chatwire_protocol::json::Value;
use simd_json::StaticNode;

/// An id written as text (a path segment, a query value, a token's subject, a JSON string).
pub fn parse(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().filter(|id| *id > 0)
}

/// An id written as a JSON value: an integer, or a string [`parse`] accepts.
pub fn from_value(v: &Value) -> Option<i64> {
    match v {
        Value::Static(StaticNode::I64(n)) => Some(*n),
        Value::Static(StaticNode::U64(n)) => i64::try_from(*n).ok(),
        Value::String(s) => parse(s),
        _ => None,
    }
    .filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn value(json: &str) -> Value {
        let mut b = json.as_bytes().to_vec();
        simd_json::to_owned_value(&mut b).unwrap()
    }

    #[test]
    fn integers_and_digit_strings_only() {
        for (json, want) in [
            ("12", Some(12)),
            (r#""12""#, Some(12)),
            ("9223372036854775807", Some(i64::MAX)),
            ("0", None),
            ("-3", None),
            ("12.0", None),
            ("1.5", None),
            (r#""+12""#, None),
            (r#"" 12""#, None),
            (r#""12 ""#, None),
            (r#""""#, None),
            (r#""99999999999999999999""#, None),
            ("18446744073709551615", None),
            ("true", None),
            ("null", None),
        ] {
            assert_eq!(from_value(&value(json)), want, "{json}");
        }
        assert_eq!(parse("42"), Some(42));
        assert_eq!(parse("042"), Some(42));
        assert_eq!(parse("4a"), None);
    }
}
