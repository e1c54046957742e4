//! Depth-limited JSON parsing through simd-json.
//!
//! Values are built recursively and dropped recursively, so a payload of 100,000 nested `[` must
//! never reach the parser. [`check_depth`] is a byte scan that jumps over string contents and
//! counts `[`/`{` nesting; [`parse`] runs it first and only then hands the bytes to simd-json.
//!
//! simd-json turns the input into a flat tape (no recursion); this module builds the
//! [`Value`] from the tape itself so that repeated object keys behave like `JSON.parse` (one entry,
//! the last value wins) at no extra cost. The tape, simd-json's buffers and the padded input copy
//! are per-thread and reused, so a parse allocates only the values it returns.

use std::cell::RefCell;

use simd_json::{Buffers, Node, Tape};

use crate::error::JsonError;

/// The JSON value type of every payload.
pub type Value = simd_json::OwnedValue;

/// Inputs up to this size parse with the reused per-thread buffers (which grow to fit them);
/// larger ones get one-off buffers so the per-thread ones stay small.
const MAX_REUSED_INPUT: usize = 64 * 1024;

/// Per-thread parser state.
struct Scratch {
    /// simd-json's stage buffers.
    buffers: Buffers,
    /// Padded copy of the input for [`parse_copy`] (simd-json unescapes strings in place).
    input: Vec<u8>,
    /// The tape allocation, empty between parses.
    tape: Vec<Node<'static>>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            buffers: Buffers::new(512),
            input: Vec::with_capacity(512),
            tape: Vec::new(),
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Fails with [`JsonError::TooDeep`] when `buf` nests arrays/objects deeper than `max_depth`.
///
/// Brackets inside strings do not count: the scan jumps over string contents with `memchr`
/// (to the next `"` or `\\`), so the cost is driven by the structure, not the text. Malformed
/// input passes through (the parser rejects it).
pub fn check_depth(buf: &[u8], max_depth: usize) -> Result<(), JsonError> {
    // Depth never exceeds the number of openers: when there are few (the usual chat payload),
    // one vectorized count settles it.
    if memchr::memchr2_iter(b'[', b'{', buf)
        .nth(max_depth)
        .is_none()
    {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut i = 0usize;
    while let Some(&b) = buf.get(i) {
        i += 1;
        match b {
            b'"' => match skip_string(buf, i) {
                Some(next) => i = next,
                None => return Ok(()),
            },
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

/// From just after an opening quote, the index just after the closing quote; `None` if the
/// string never ends.
fn skip_string(buf: &[u8], mut i: usize) -> Option<usize> {
    // Keys and short values end within a few bytes: look at those directly, then use memchr.
    for _ in 0..16 {
        match *buf.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    loop {
        let rest = buf.get(i..)?;
        let at = memchr::memchr2(b'"', b'\\', rest)?;
        if rest.get(at) == Some(&b'"') {
            return Some(i + at + 1);
        }
        // A backslash: skip it and the escaped byte.
        i += at + 2;
    }
}

/// Parses `buf` (simd-json rewrites it in place) after checking its depth against `max_depth`.
pub fn parse(buf: &mut [u8], max_depth: usize) -> Result<Value, JsonError> {
    check_depth(buf, max_depth)?;
    if buf.len() > MAX_REUSED_INPUT {
        return parse_with(buf, &mut Buffers::new(buf.len()), &mut Vec::new());
    }
    with_scratch(buf, |buf, s| parse_with(buf, &mut s.buffers, &mut s.tape))
}

/// Parses a copy of `input` (for callers holding shared bytes), after the depth check. The copy
/// goes into a per-thread padded buffer, so simd-json skips its own copy.
pub fn parse_copy(input: &[u8], max_depth: usize) -> Result<Value, JsonError> {
    with_tape(input, max_depth, build_root)
}

/// Validates a copy of `input` (depth check, then simd-json's tape: full syntax and UTF-8) and
/// hands the tape to `f`, without building any value. Same checks and errors as [`parse_copy`];
/// nothing is allocated once the per-thread buffers have grown to fit.
pub fn with_tape<R>(
    input: &[u8],
    max_depth: usize,
    f: impl FnOnce(&[Node<'_>]) -> Result<R, JsonError>,
) -> Result<R, JsonError> {
    check_depth(input, max_depth)?;
    if input.len() > MAX_REUSED_INPUT {
        let mut copy = input.to_vec();
        let mut buffers = Buffers::new(input.len());
        let mut filled = Tape(Vec::new());
        simd_json::fill_tape(&mut copy, &mut buffers, &mut filled).map_err(syntax)?;
        return f(&filled.0);
    }
    with_scratch(input, |input, s| {
        let Scratch {
            buffers,
            input: copy,
            tape,
        } = s;
        copy.clear();
        copy.extend_from_slice(input);
        copy.resize(input.len() + simd_json::INPUT_PADDING, 0);
        let mut filled = Tape(std::mem::take(tape)).reset();
        let result = simd_json::fill_tape_padded(copy, input.len(), buffers, &mut filled)
            .map_err(syntax)
            .and_then(|()| f(&filled.0));
        *tape = filled.reset().0;
        result
    })
}

/// Deserializes a typed value from a copy of `input` through simd-json's serde support, reusing
/// the per-thread buffers. The caller must have checked the depth already (serde recursion
/// follows the nesting). Errors are simd-json's, as text.
pub fn deserialize_copy<T: serde::de::DeserializeOwned>(input: &[u8]) -> Result<T, String> {
    if input.len() > MAX_REUSED_INPUT {
        return simd_json::serde::from_slice(&mut input.to_vec()).map_err(|e| e.to_string());
    }
    with_scratch(input, |input, s| {
        let Scratch {
            buffers,
            input: copy,
            tape,
        } = s;
        copy.clear();
        copy.extend_from_slice(input);
        copy.resize(input.len() + simd_json::INPUT_PADDING, 0);
        let mut filled = Tape(std::mem::take(tape)).reset();
        if let Err(e) = simd_json::fill_tape_padded(copy, input.len(), buffers, &mut filled) {
            *tape = filled.reset().0;
            return Err(e.to_string());
        }
        let mut de = simd_json::Deserializer::from_tape(filled);
        let result = T::deserialize(&mut de).map_err(|e| e.to_string());
        *tape = de.into_tape().reset().0;
        result
    })
}

/// Runs `f` with this thread's scratch state, or with fresh state if it is busy.
fn with_scratch<I, R>(input: I, f: impl FnOnce(I, &mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(input, &mut scratch),
        // Re-entrant use on this thread (cannot happen today).
        Err(_) => f(input, &mut Scratch::new()),
    })
}

/// Fills a tape from `buf` (simd-json copies it into its padded buffer) and builds the value.
fn parse_with(
    buf: &mut [u8],
    buffers: &mut Buffers,
    tape: &mut Vec<Node<'static>>,
) -> Result<Value, JsonError> {
    let mut filled = Tape(std::mem::take(tape)).reset();
    let result = simd_json::fill_tape(buf, buffers, &mut filled)
        .map_err(syntax)
        .and_then(|()| build_root(&filled.0));
    *tape = filled.reset().0;
    result
}

fn syntax(e: simd_json::Error) -> JsonError {
    JsonError::Syntax { offset: e.index() }
}

/// Builds the value at the start of `nodes`, which must be exactly one value.
fn build_root(nodes: &[Node<'_>]) -> Result<Value, JsonError> {
    let mut it = nodes.iter();
    let value = build(&mut it).ok_or(JsonError::Syntax { offset: 0 })?;
    Ok(value)
}

/// Builds one value from the tape. Recursion depth is bounded by the depth check. Object keys go
/// through `insert`, which keeps one entry per key with the last value, like `JSON.parse`.
fn build(nodes: &mut std::slice::Iter<'_, Node<'_>>) -> Option<Value> {
    Some(match *nodes.next()? {
        Node::Static(s) => Value::Static(s),
        Node::String(s) => Value::String(s.to_owned()),
        Node::Array { len, .. } => {
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                items.push(build(nodes)?);
            }
            Value::Array(Box::new(items))
        }
        Node::Object { len, .. } => {
            let mut obj =
                simd_json::owned::Object::with_capacity_and_hasher(len, Default::default());
            for _ in 0..len {
                let Node::String(key) = *nodes.next()? else {
                    return None;
                };
                let value = build(nodes)?;
                obj.insert(key.to_owned(), value);
            }
            Value::Object(Box::new(obj))
        }
    })
}

/// Appends `value` as compact JSON to `out`.
pub fn write(value: &Value, out: &mut Vec<u8>) {
    use simd_json::prelude::Writable;
    // Writing into a Vec cannot fail.
    let _ = value.write(out);
}

/// Appends `s` as a JSON string literal (quotes and escapes included). Escapes what JSON must
/// (`"`, `\` and control characters) and nothing else, as serde_json does; the scan for them
/// goes eight bytes at a time.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(i) = find_escape(bytes, start) {
        let b = bytes.get(i).copied().unwrap_or_default();
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => &[],
        };
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

/// True for a byte a JSON string must escape.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// True when `bytes` holds a control character (below 0x20), which a JSON string may not hold
/// unescaped; eight bytes per step.
pub(crate) fn has_control(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        if below_space(word(chunk)) != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b < 0x20)
}

/// Eight bytes of 1.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The top bit of each of eight bytes.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Eight bytes as one word (`chunk` is eight bytes long).
fn word(chunk: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    u64::from_le_bytes(word)
}

/// Nonzero exactly when some byte of `w` is below 0x20 (its top bit marks one such byte).
fn below_space(w: u64) -> u64 {
    w.wrapping_sub(ONES * 0x20) & !w & HIGH
}

/// Nonzero exactly when some byte of `w` is zero.
fn has_zero(w: u64) -> u64 {
    w.wrapping_sub(ONES) & !w & HIGH
}

/// The index of the first byte at or after `from` that a JSON string must escape. Tests eight
/// bytes per step (a byte below 0x20, or equal to `"` or `\`, anywhere in the word), then finds
/// the byte within the word that did.
fn find_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let rest = bytes.get(from..)?;
    let mut chunks = rest.chunks_exact(8);
    let mut at = from;
    for chunk in &mut chunks {
        let w = word(chunk);
        let hit = below_space(w)
            | has_zero(w ^ (ONES * u64::from(b'"')))
            | has_zero(w ^ (ONES * u64::from(b'\\')));
        if hit != 0
            && let Some(i) = chunk.iter().position(|&b| needs_escape(b))
        {
            return Some(at + i);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| needs_escape(b))
        .map(|i| at + i)
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
    fn escapes_never_hide_a_quote_or_recurse() {
        // 1 MB of escaped backslashes inside one string, then real nesting.
        let mut buf = b"[\"".to_vec();
        buf.extend(std::iter::repeat_n(b'\\', 1_000_000));
        buf.extend_from_slice(b"\",[[[1]]]]");
        assert_eq!(check_depth(&buf, 3), Err(JsonError::TooDeep { max: 3 }));
        assert_eq!(check_depth(&buf, 4), Ok(()));
        assert_eq!(check_depth(br#"["a\"[[[["]"#, 1), Ok(()));
        assert_eq!(
            check_depth(br#"["0123456789abcdefgh\"[[[[", [[1]]]"#, 2),
            Err(JsonError::TooDeep { max: 2 })
        );
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
    fn control_characters_are_found_at_every_place() {
        for len in 1..20 {
            for at in 0..len {
                for c in [0u8, 0x08, 0x1f] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = c;
                    assert!(has_control(&bytes), "{bytes:?}");
                }
                let mut clean = vec![0xe2u8; len];
                clean[at] = b' ';
                assert!(!has_control(&clean), "{clean:?}");
            }
        }
        assert!(!has_control(b""));
        assert!(!has_control("\u{7f}€😀 !~".as_bytes()));
    }

    /// Byte for byte what serde_json writes, for every character that needs escaping (and some
    /// that look close: DEL, multi-byte characters) at every place of strings long enough to
    /// take the eight-bytes-at-a-time scan, and around its tail.
    #[test]
    fn write_str_matches_serde_json_everywhere() {
        let mut specials: Vec<char> = (0u8..0x20).map(char::from).collect();
        specials.extend([
            '"', '\\', '\u{7f}', '!', '#', '[', ']', 'é', '€', '😀', '\u{2028}',
        ]);
        for len in 0..20 {
            for at in 0..=len {
                for &c in &specials {
                    let mut s: String = "abcdefghijklmnopqrst".chars().take(len).collect();
                    s.insert(at.min(s.len()), c);
                    if c == '"' {
                        s.push('\\');
                    }
                    let mut out = Vec::new();
                    write_str(&s, &mut out);
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        serde_json::to_string(&s).unwrap(),
                        "{s:?}"
                    );
                }
            }
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
