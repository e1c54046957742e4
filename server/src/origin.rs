//! Which browser origins may talk to chatwire, and the CORS headers that tell browsers so.
//!
//! Policy (contract section 1): `CORS_ORIGINS` lists the allowed origins; unset allows the same
//! origin (the `Origin` authority equals the `Host` header) and `localhost` / `127.0.0.1` /
//! `[::1]` origins only. A request with no `Origin` header is not from a browser page and is
//! allowed. `*` allows any origin but never with credentials. A WebSocket upgrade or polling
//! request from a refused origin gets 403 (the caller's job; this module only decides).

use hyper::header::{self, HeaderMap, HeaderValue};

use crate::config::Config;

/// Methods the REST API and polling transport answer to, sent in preflight answers.
const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";
/// Request headers allowed when a preflight does not name its own.
const DEFAULT_ALLOW_HEADERS: &str = "authorization, content-type";
/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE_SECS: &str = "86400";

/// The origin allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// `CORS_ORIGINS` unset: same-origin and localhost origins.
    SameOriginAndLocalhost,
    /// Exactly these origins (normalized: lower-case, no trailing slash, no default port).
    List(Vec<String>),
    /// `*`: any origin, answered with `Access-Control-Allow-Origin: *` and no credentials.
    Any,
}

impl OriginPolicy {
    /// The policy `CORS_ORIGINS` describes.
    pub fn from_config(config: &Config) -> Self {
        Self::from_list(&config.cors_origins)
    }

    /// The policy for a list of origins; empty entries are ignored, `*` anywhere means [`Self::Any`].
    pub fn from_list<S: AsRef<str>>(origins: &[S]) -> Self {
        let list: Vec<String> = origins
            .iter()
            .map(|o| o.as_ref().trim())
            .filter(|o| !o.is_empty())
            .map(|o| normalize(o).unwrap_or_else(|| o.to_ascii_lowercase()))
            .collect();
        if list.iter().any(|o| o == "*") {
            Self::Any
        } else if list.is_empty() {
            Self::SameOriginAndLocalhost
        } else {
            Self::List(list)
        }
    }

    /// Whether a request with this `Origin` header (None = absent) and `Host` header may proceed.
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        match self {
            Self::Any => true,
            Self::List(list) => normalize(origin).is_some_and(|o| list.contains(&o)),
            Self::SameOriginAndLocalhost => match Origin::parse(origin) {
                Some(o) => o.is_localhost() || host.is_some_and(|h| o.same_authority(h)),
                None => false,
            },
        }
    }

    /// CORS headers for a normal (non-preflight) response to an allowed origin; adds nothing when
    /// the request had no `Origin` or the origin is refused.
    pub fn apply_cors(&self, origin: Option<&str>, host: Option<&str>, out: &mut HeaderMap) {
        let Some(origin_str) = origin else {
            return;
        };
        if !self.check(origin, host) {
            return;
        }
        if *self == Self::Any {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            return;
        }
        let Ok(value) = HeaderValue::from_str(origin_str) else {
            return;
        };
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        out.append(header::VARY, HeaderValue::from_static("Origin"));
    }

    /// The answer to an `OPTIONS` preflight: `Some(headers)` for a 204 when the origin is
    /// allowed, `None` for a 403. `request_headers` is the `Access-Control-Request-Headers` value.
    pub fn preflight(
        &self,
        origin: Option<&str>,
        host: Option<&str>,
        request_headers: Option<&str>,
    ) -> Option<HeaderMap> {
        if !self.check(origin, host) {
            return None;
        }
        let mut out = HeaderMap::new();
        self.apply_cors(origin, host, &mut out);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        let allow_headers = request_headers
            .filter(|h| h.len() <= 1024)
            .and_then(|h| HeaderValue::from_str(h).ok())
            .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_ALLOW_HEADERS));
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE_SECS),
        );
        Some(out)
    }
}

/// A parsed `Origin` value: `scheme://host[:port]`.
#[derive(Debug, PartialEq, Eq)]
struct Origin<'a> {
    /// `http` or `https` (lower-cased by the caller's comparison).
    scheme: &'a str,
    /// Host name or IP literal (IPv6 with brackets), as sent.
    host: &'a str,
    /// The explicit port, or the scheme's default.
    port: u16,
    /// Whether the port was written out.
    explicit_port: bool,
}

impl<'a> Origin<'a> {
    /// Parses an origin; `None` for `null`, paths, credentials or schemes other than http(s).
    fn parse(s: &'a str) -> Option<Self> {
        let (scheme, rest) = s.split_once("://")?;
        let default_port = if scheme.eq_ignore_ascii_case("http") {
            80
        } else if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            return None;
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
            return None;
        }
        let (host, port) = split_host_port(rest)?;
        Some(Self {
            scheme,
            host,
            port: port.unwrap_or(default_port),
            explicit_port: port.is_some(),
        })
    }

    /// Whether the origin is a loopback name on any port.
    fn is_localhost(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host == "127.0.0.1"
            || self.host == "[::1]"
    }

    /// Whether the `Host` header names the same host and port. A `Host` without a port means
    /// the default port of whatever scheme the client used (80 or 443).
    fn same_authority(&self, host_header: &str) -> bool {
        let Some((host, port)) = split_host_port(host_header.trim()) else {
            return false;
        };
        if !host.eq_ignore_ascii_case(self.host) {
            return false;
        }
        match port {
            Some(port) => port == self.port,
            None => !self.explicit_port || self.port == 80 || self.port == 443,
        }
    }
}

/// Splits `host[:port]` (IPv6 literals in brackets); `None` when the port is not a number.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let (host, after) = s.split_at(end + 1);
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    match port {
        Some(p) => Some((host, Some(p.parse().ok()?))),
        None => Some((host, None)),
    }
}

/// The canonical text of an origin for list comparison: `scheme://host[:port]`, lower-case,
/// default port dropped. `None` when it is not an http(s) origin (`null`, garbage).
fn normalize(s: &str) -> Option<String> {
    let o = Origin::parse(s.trim())?;
    let scheme = o.scheme.to_ascii_lowercase();
    let host = o.host.to_ascii_lowercase();
    let default = if scheme == "http" { 80 } else { 443 };
    Some(if o.port == default {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{}", o.port)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn default_policy() -> OriginPolicy {
        OriginPolicy::from_list::<&str>(&[])
    }

    #[test]
    fn no_origin_header_is_allowed_under_every_policy() {
        for policy in [
            default_policy(),
            OriginPolicy::from_list(&["https://app.example"]),
            OriginPolicy::Any,
        ] {
            assert!(policy.check(None, Some("chat.example")));
            assert!(policy.check(None, None));
        }
    }

    #[test]
    fn default_allows_same_origin_and_localhost_only() {
        let p = default_policy();
        assert_eq!(p, OriginPolicy::SameOriginAndLocalhost);
        assert!(p.check(Some("https://chat.example"), Some("chat.example")));
        assert!(p.check(Some("http://chat.example:8080"), Some("chat.example:8080")));
        assert!(p.check(Some("HTTPS://Chat.Example"), Some("chat.example")));
        assert!(p.check(Some("http://localhost:5173"), Some("chat.example")));
        assert!(p.check(Some("http://127.0.0.1:3000"), None));
        assert!(p.check(Some("http://[::1]:3000"), None));
        // Cross-site pages are refused (cross-site WebSocket hijacking).
        assert!(!p.check(Some("https://evil.example"), Some("chat.example")));
        assert!(!p.check(Some("http://chat.example:8080"), Some("chat.example:3000")));
        assert!(!p.check(Some("http://chat.example:8080"), Some("chat.example")));
        assert!(!p.check(
            Some("https://chat.example.evil.example"),
            Some("chat.example")
        ));
        assert!(!p.check(Some("http://localhost.evil.example"), Some("chat.example")));
        assert!(!p.check(Some("null"), Some("chat.example")));
        assert!(!p.check(Some("file://"), Some("chat.example")));
        assert!(!p.check(Some("https://chat.example"), None));
    }

    #[test]
    fn list_matches_exact_normalized_origins() {
        let p = OriginPolicy::from_list(&["https://App.Example/", " https://b.example:8443 ", ""]);
        assert_eq!(
            p,
            OriginPolicy::List(vec![
                "https://app.example".into(),
                "https://b.example:8443".into()
            ])
        );
        assert!(p.check(Some("https://app.example"), Some("api.example")));
        assert!(p.check(Some("https://app.example:443"), Some("api.example")));
        assert!(p.check(Some("https://b.example:8443"), None));
        assert!(!p.check(Some("http://app.example"), Some("api.example")));
        assert!(!p.check(Some("https://b.example"), None));
        // With a list, localhost and same-origin are not implied.
        assert!(!p.check(Some("http://localhost:3000"), Some("localhost:3000")));
    }

    #[test]
    fn cors_headers_echo_the_origin_with_credentials() {
        let p = OriginPolicy::from_list(&["https://app.example"]);
        let mut h = HeaderMap::new();
        p.apply_cors(Some("https://app.example"), None, &mut h);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::VARY], "Origin");

        let mut refused = HeaderMap::new();
        p.apply_cors(Some("https://evil.example"), None, &mut refused);
        assert!(refused.is_empty());
        let mut absent = HeaderMap::new();
        p.apply_cors(None, None, &mut absent);
        assert!(absent.is_empty());
    }

    #[test]
    fn wildcard_never_comes_with_credentials() {
        let p = OriginPolicy::from_list(&["https://a.example", "*"]);
        assert_eq!(p, OriginPolicy::Any);
        assert!(p.check(Some("https://anything.example"), None));
        let mut h = HeaderMap::new();
        p.apply_cors(Some("https://anything.example"), None, &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }

    #[test]
    fn preflight_answers_allowed_origins_only() {
        let p = default_policy();
        let h = p
            .preflight(
                Some("http://localhost:5173"),
                Some("api.example"),
                Some("authorization, content-type, x-custom"),
            )
            .unwrap();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:5173"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], ALLOW_METHODS);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization, content-type, x-custom"
        );
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], MAX_AGE_SECS);
        let h = p
            .preflight(Some("http://localhost:5173"), None, Some("bad\nvalue"))
            .unwrap();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS],
            DEFAULT_ALLOW_HEADERS
        );
        assert!(
            p.preflight(Some("https://evil.example"), Some("api.example"), None)
                .is_none()
        );
    }

    #[test]
    fn malformed_host_and_origin_values_are_refused_not_panicking() {
        let p = default_policy();
        for origin in [
            "",
            "http://",
            "http://:80",
            "http://a:b",
            "http://[::1",
            "http://a/b",
        ] {
            assert!(!p.check(Some(origin), Some("a")), "{origin}");
        }
        for host in ["", ":", "a:99999", "[::1"] {
            assert!(!p.check(Some("https://a"), Some(host)), "{host}");
        }
    }
}
