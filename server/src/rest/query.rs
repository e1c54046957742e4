//! Query strings (`?limit=20&before=123&q=hello%20world`): split, percent-decoded, bounded.

use chatwire_store::StoreError;

/// Most parameters read from one query string (the rest are ignored).
const MAX_PARAMS: usize = 16;

/// The decoded parameters of a request.
#[derive(Debug, Default)]
pub(crate) struct Query {
    /// `(name, value)` in order of appearance.
    params: Vec<(String, String)>,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes (and `+` -> space); invalid escapes are kept as they are, invalid UTF-8 is replaced.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            out.push(b' ');
            i += 1;
        } else if b == b'%' {
            match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub(crate) fn parse(raw: &str) -> Query {
        let params = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .take(MAX_PARAMS)
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        Query { params }
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `?limit=`: default when absent, clamped to `1..=max`; not a number is 400.
    pub(crate) fn limit(&self, default: u32, max: u32) -> Result<u32, StoreError> {
        match self.get("limit") {
            None | Some("") => Ok(default.min(max)),
            Some(v) => v
                .parse::<i64>()
                .map(|n| n.clamp(1, i64::from(max)) as u32)
                .map_err(|_| StoreError::BadRequest("limit must be an integer".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decodes_and_clamps() {
        let q = Query::parse("limit=500&q=Hello%20W%C3%B6rld+x&before=12&bad=%zz");
        assert_eq!(q.get("q"), Some("Hello Wörld x"));
        assert_eq!(q.get("bad"), Some("%zz"));
        assert_eq!(q.limit(50, 100).unwrap(), 100);
        assert_eq!(Query::parse("limit=0").limit(50, 100).unwrap(), 1);
        assert_eq!(Query::parse("").limit(50, 100).unwrap(), 50);
        assert!(Query::parse("limit=abc").limit(50, 100).is_err());
    }
}
