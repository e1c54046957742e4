//! Depth-limited JSON parsing through simd-json.
//!
//! simd-json builds `OwnedValue`s recursively and they drop recursively, so a payload of 100,000
//! nested `[` must never reach the parser. [`check_depth`] is a single byte scan that skips string
//! contents (and their escapes) and counts `[`/`{` nesting; [`parse`] runs it first and only then
//! hands the bytes to simd-json, reusing per-thread scratch buffers.

use std::cell::RefCell;

use crate::error::JsonError;

/// The JSON value type of every payload.
pub type Value = simd_json::OwnedValue;

/// Inputs up to this size parse with the reused per-thread buffers (which grow to fit them).
const MAX_REUSED_INPUT: usize = 64 * 1024;

thread_local! {
    /// simd-json's scratch buffers, reused by every parse on this thread (no per-parse setup).
    static BUFFERS: RefCell<simd_json::Buffers> = RefCell::new(simd_json::Buffers::new(512));
    /// Mutable copy of the input for [`parse_copy`] (simd-json rewrites its input).
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Fails with [`JsonError::TooDeep`] when `buf` nests arrays/objects deeper than `max_depth`.
///
/// Brackets inside strings do not count. Malformed input passes through (the parser rejects it).
pub fn check_depth(buf: &[u8], max_depth: usize) -> Result<(), JsonError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in buf {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(JsonError::TooDeep { max: max_depth });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses `buf` (simd-json rewrites it in place) after checking its depth against `max_depth`.
pub fn parse(buf: &mut [u8], max_depth: usize) -> Result<Value, JsonError> {
    check_depth(buf, max_depth)?;
    parse_checked(buf)
}

/// simd-json on input whose depth was already checked.
fn parse_checked(buf: &mut [u8]) -> Result<Value, JsonError> {
    let result = if buf.len() > MAX_REUSED_INPUT {
        // Large payloads get one-off buffers so the per-thread ones stay small.
        simd_json::owned::to_value(buf)
    } else {
        BUFFERS.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buffers) => simd_json::owned::to_value_with_buffers(buf, &mut buffers),
            // Re-entrant use on this thread (cannot happen today): fall back to fresh buffers.
            Err(_) => simd_json::owned::to_value(buf),
        })
    };
    let mut value = result.map_err(|e| JsonError::Syntax { offset: e.index() })?;
    dedupe_keys(&mut value);
    Ok(value)
}

/// Makes repeated object keys behave like `JSON.parse`: one entry per key, the last value wins.
///
/// simd-json keeps every entry of objects up to 32 keys (it skips the duplicate check for speed),
/// which would make a key readable with one value here and another in a browser. Recursion depth
/// is bounded by the depth check that ran before parsing.
fn dedupe_keys(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(dedupe_keys),
        Value::Object(obj) => {
            // Over 32 keys simd-json already dedupes (hash-backed); the quadratic scan stays small.
            let has_duplicates = (2..=32).contains(&obj.len())
                && obj
                    .keys()
                    .enumerate()
                    .any(|(i, k)| obj.keys().skip(i + 1).any(|other| other == k));
            if has_duplicates {
                let entries = std::mem::take(&mut **obj);
                for (k, v) in entries {
                    obj.insert(k, v);
                }
            }
            obj.values_mut().for_each(dedupe_keys);
        }
        Value::Static(_) | Value::String(_) => {}
    }
}

/// Parses a copy of `input` (for callers holding shared bytes), after the depth check. Small
/// inputs are copied into a per-thread scratch buffer, so the hot path does not allocate for it.
pub fn parse_copy(input: &[u8], max_depth: usize) -> Result<Value, JsonError> {
    check_depth(input, max_depth)?;
    if input.len() > MAX_REUSED_INPUT {
        return parse_checked(&mut input.to_vec());
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            scratch.clear();
            scratch.extend_from_slice(input);
            parse_checked(&mut scratch)
        }
        Err(_) => parse_checked(&mut input.to_vec()),
    })
}

/// Appends `value` as compact JSON to `out`.
pub fn write(value: &Value, out: &mut Vec<u8>) {
    use simd_json::prelude::Writable;
    // Writing into a Vec cannot fail.
    let _ = value.write(out);
}

/// Appends `s` as a JSON string literal (quotes and escapes included).
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_event_payload() {
        let mut buf = br#"["message:send",{"conversationId":123,"content":"hi"}]"#.to_vec();
        let v = parse(&mut buf, 128).unwrap();
        let mut out = Vec::new();
        write(&v, &mut out);
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back[0], "message:send");
        assert_eq!(back[1]["conversationId"], 123);
    }

    #[test]
    fn hundred_thousand_brackets_are_a_typed_error() {
        let mut buf = vec![b'['; 100_000];
        assert_eq!(parse(&mut buf, 128), Err(JsonError::TooDeep { max: 128 }));
        let mut closed = vec![b'['; 100_000];
        closed.extend(std::iter::repeat_n(b']', 100_000));
        assert_eq!(
            parse(&mut closed, 128),
            Err(JsonError::TooDeep { max: 128 })
        );
    }

    #[test]
    fn parse_copy_leaves_the_input_alone() {
        let input = br#"["a\nb",{"k":"\u00e9"}]"#;
        let v = parse_copy(input, 8).unwrap();
        assert_eq!(&input[..], br#"["a\nb",{"k":"\u00e9"}]"#);
        let mut out = Vec::new();
        write(&v, &mut out);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()[1]["k"],
            "é"
        );
        assert_eq!(parse_copy(b"[[[", 2), Err(JsonError::TooDeep { max: 2 }));
    }

    #[test]
    fn repeated_keys_keep_the_last_value_like_json_parse() {
        let mut buf = br#"[{"a":1,"b":{"x":1,"x":2},"a":3}]"#.to_vec();
        let v = parse(&mut buf, 8).unwrap();
        let mut out = Vec::new();
        write(&v, &mut out);
        assert_eq!(out, br#"[{"a":3,"b":{"x":2}}]"#);
    }

    #[test]
    fn repeated_keys_in_large_objects_too() {
        let mut text = String::from("{");
        for i in 0..40 {
            text.push_str(&format!("\"k{i}\":{i},"));
        }
        text.push_str("\"k0\":99}");
        let v = parse(&mut text.into_bytes(), 8).unwrap();
        let Value::Object(obj) = v else {
            panic!("not an object")
        };
        assert_eq!(obj.len(), 40);
        assert_eq!(obj.get("k0"), Some(&Value::from(99i64)));
    }

    #[test]
    fn large_inputs_parse_too() {
        let mut big = format!("[\"{}\",1]", "x".repeat(MAX_REUSED_INPUT)).into_bytes();
        assert!(parse(&mut big, 4).is_ok());
        let mut small = b"[1]".to_vec();
        assert!(parse(&mut small, 4).is_ok());
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let mut buf = br#"["[[[[[[\"[[[[", {"a":"{{{{{{"}]"#.to_vec();
        assert!(parse(&mut buf, 2).is_ok());
        let mut deep = br#"[[["x"]]]"#.to_vec();
        assert_eq!(parse(&mut deep, 2), Err(JsonError::TooDeep { max: 2 }));
        let mut exact = br#"[["x"]]"#.to_vec();
        assert!(parse(&mut exact, 2).is_ok());
    }

    #[test]
    fn write_str_escapes_like_json() {
        for s in [
            "plain",
            "quo\"te",
            "back\\slash",
            "nl\n\r\t",
            "\u{1}\u{1f}",
            "€ ok",
        ] {
            let mut out = Vec::new();
            write_str(s, &mut out);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn malformed_json_is_a_syntax_error() {
        for bad in [&b"[1,"[..], b"{\"a\"}", b"", b"nul", b"[\"\xff\"]"] {
            let mut buf = bad.to_vec();
            assert!(
                matches!(parse(&mut buf, 128), Err(JsonError::Syntax { .. })),
                "{bad:?}"
            );
        }
    }
}
