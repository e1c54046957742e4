//! A one-pass JSON checker for the EVENT fast path: validates the grammar of a top-level array,
//! enforces the depth limit and records where each element starts and ends, without building
//! anything.
//!
//! It only ever says "valid, here are the elements" or "not sure": anything invalid, too deep,
//! or where simd-json's verdict could differ from a plain reading of the grammar (a `\u` escape
//! in the surrogate range, a number with an exponent or more than 18 digits, a non-array or
//! empty top level) answers `None`, and the caller runs the full simd-json check, which then
//! decides and produces the decoder's exact error. So the fast path never accepts what the
//! decoder refuses, and never invents its own errors. The caller checks UTF-8 beforehand.

use std::ops::Range;

use smallvec::SmallVec;

/// Byte ranges of a top-level array's elements.
pub(crate) type Spans = SmallVec<[Range<usize>; 3]>;

/// Deepest nesting the scanner tracks itself (bits in its container stack); deeper inputs go to
/// the full check.
const STACK_BITS: usize = 256;

/// Element spans of a non-empty top-level array, offset by `base`; `None` = let the full check
/// decide.
pub(crate) fn event_array(d: &[u8], base: usize, max_depth: usize) -> Option<Spans> {
    let limit = max_depth.min(STACK_BITS - 1);
    // Bit set = the container at that depth is an object.
    let mut stack = [0u64; STACK_BITS / 64];
    let mut depth = 1usize;
    let mut spans = SmallVec::new();
    let mut i = ws(d, 0);
    if *d.get(i)? != b'[' || limit == 0 {
        return None;
    }
    i = ws(d, i + 1);
    if *d.get(i)? == b']' {
        // Empty: the full check says why it is refused.
        return None;
    }
    let mut elem_start = i;
    'value: loop {
        // A value starts at `i` (whitespace skipped).
        if depth == 1 {
            elem_start = i;
        }
        match *d.get(i)? {
            b'"' => i = string(d, i + 1)?,
            b'-' | b'0'..=b'9' => i = number(d, i)?,
            b't' => i = literal(d, i, b"true")?,
            b'f' => i = literal(d, i, b"false")?,
            b'n' => i = literal(d, i, b"null")?,
            open @ (b'[' | b'{') => {
                if depth >= limit {
                    return None;
                }
                let object = open == b'{';
                set(&mut stack, depth, object);
                depth += 1;
                i = ws(d, i + 1);
                let close = if object { b'}' } else { b']' };
                if *d.get(i)? == close {
                    depth -= 1;
                    i += 1;
                } else {
                    if object {
                        i = key(d, i)?;
                    }
                    continue 'value;
                }
            }
            _ => return None,
        }
        // After a value: `,` (next element or member), or the end of containers.
        loop {
            if depth == 1 {
                spans.push(base + elem_start..base + i);
            }
            i = ws(d, i);
            let object = get(&stack, depth - 1);
            match *d.get(i)? {
                b',' => {
                    i = ws(d, i + 1);
                    if object {
                        i = key(d, i)?;
                    }
                    continue 'value;
                }
                b']' if !object => {}
                b'}' if object => {}
                _ => return None,
            }
            depth -= 1;
            i += 1;
            if depth == 0 {
                return (ws(d, i) == d.len()).then_some(spans);
            }
        }
    }
}

fn set(stack: &mut [u64; STACK_BITS / 64], depth: usize, object: bool) {
    if let Some(word) = stack.get_mut(depth / 64) {
        let bit = 1u64 << (depth % 64);
        if object {
            *word |= bit;
        } else {
            *word &= !bit;
        }
    }
}

fn get(stack: &[u64; STACK_BITS / 64], depth: usize) -> bool {
    stack
        .get(depth / 64)
        .is_some_and(|w| w & (1u64 << (depth % 64)) != 0)
}

/// JSON whitespace (not form feed).
fn ws(d: &[u8], mut i: usize) -> usize {
    while matches!(d.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// An object key and its `:` at `i`; returns where the value starts.
fn key(d: &[u8], i: usize) -> Option<usize> {
    if *d.get(i)? != b'"' {
        return None;
    }
    let i = ws(d, string(d, i + 1)?);
    if *d.get(i)? != b':' {
        return None;
    }
    Some(ws(d, i + 1))
}

/// From just after an opening quote, just after the closing one. Control characters and unknown
/// escapes are invalid; `\u` escapes in the surrogate range are left to the full check.
fn string(d: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let rest = d.get(i..)?;
        let at = memchr::memchr2(b'"', b'\\', rest)?;
        if crate::json::has_control(rest.get(..at)?) {
            return None;
        }
        i += at;
        if d.get(i) == Some(&b'"') {
            return Some(i + 1);
        }
        // A backslash.
        match *d.get(i + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
            b'u' => {
                let hex = d.get(i + 2..i + 6)?;
                let text = std::str::from_utf8(hex).ok()?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let code = u16::from_str_radix(text, 16).ok()?;
                if (0xd800..0xe000).contains(&code) {
                    return None;
                }
                i += 6;
            }
            _ => return None,
        }
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`; exponents and more than 18 digits are left to the full check.
fn number(d: &[u8], mut i: usize) -> Option<usize> {
    if d.get(i) == Some(&b'-') {
        i += 1;
    }
    let int = digits(d, i);
    if int == 0 || (int > 1 && d.get(i) == Some(&b'0')) {
        return None;
    }
    i += int;
    let mut total = int;
    if d.get(i) == Some(&b'.') {
        let frac = digits(d, i + 1);
        if frac == 0 {
            return None;
        }
        total += frac;
        i += 1 + frac;
    }
    if total > 18 || matches!(d.get(i), Some(b'e' | b'E')) {
        return None;
    }
    Some(i)
}

fn digits(d: &[u8], i: usize) -> usize {
    d.get(i..)
        .map_or(0, |r| r.iter().take_while(|b| b.is_ascii_digit()).count())
}

fn literal(d: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    (d.get(i..i + word.len())? == word).then_some(i + word.len())
}
