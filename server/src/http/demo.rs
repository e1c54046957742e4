//! The demo chat page and the socket.io-client bundle, both for browsers.
//!
//! - `/`, `/demo/app.js`, `/demo/view.js`, `/demo/app.css`: a chat front end written against the guide's flow
//!   (static files under `server/static/`, embedded in the binary), served when
//!   [`Config::demo_page_enabled`] (`DEMO_PAGE`, else while dev tokens are on).
//! - `/socket.io/socket.io.js`, `socket.io.min.js`, `socket.io.esm.min.js` and their `.map` files:
//!   the official `socket.io-client` browser bundles, like Node's `serveClient`, read once at start
//!   from `SOCKETIO_CLIENT_DIR` (where `make interop-deps` installs them; never committed). When
//!   they are missing the server logs how to install them and answers 404 with the same text,
//!   which the page shows.
//!
//! Every file is answered with an `ETag` (a hash of its bytes) and `Cache-Control: no-cache`, so
//! a browser revalidates and gets `304 Not Modified` while the file is unchanged.

use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, ETAG, HeaderName, HeaderValue, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};

use super::response::{empty, with_type};
use crate::config::Config;

/// The browser bundles served from the client folder (Node's `serveClient` set, minus msgpack:
/// chatwire speaks the default JSON parser).
const CLIENT_FILES: [&str; 6] = [
    "socket.io.js",
    "socket.io.js.map",
    "socket.io.min.js",
    "socket.io.min.js.map",
    "socket.io.esm.min.js",
    "socket.io.esm.min.js.map",
];

/// The page's paths: `index.html`, then its scripts and style sheet.
const PAGE_PATHS: [&str; 4] = ["/", "/demo/app.js", "/demo/view.js", "/demo/app.css"];

/// Largest client file read from disk; the 4.x bundles are under 400 KB.
const MAX_CLIENT_FILE: u64 = 8 * 1024 * 1024;

/// What the page may load: its own files and the server's client bundle, and connect back to
/// the same origin (REST, polling and WebSocket).
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// One file ready to send.
#[derive(Debug)]
struct Asset {
    body: Bytes,
    etag: HeaderValue,
    content_type: &'static str,
}

impl Asset {
    fn new(body: Bytes, content_type: &'static str) -> Self {
        let etag = HeaderValue::from_str(&format!("\"{:016x}-{:x}\"", fnv1a(&body), body.len()))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        Self {
            body,
            etag,
            content_type,
        }
    }

    /// 200 with the body, or 304 when the request's `If-None-Match` names this file's ETag.
    fn respond(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let fresh = req
            .headers()
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == "*" || self.etag.as_bytes() == tag.as_bytes());
        let mut resp = if fresh {
            empty(StatusCode::NOT_MODIFIED)
        } else {
            with_type(StatusCode::OK, self.body.clone(), self.content_type)
        };
        let headers = resp.headers_mut();
        headers.insert(ETAG, self.etag.clone());
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        resp
    }
}

/// 64-bit FNV-1a: a stable content hash for ETags (not a security boundary).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The demo page's files and the client bundles, loaded once at start.
#[derive(Debug)]
pub struct Demo {
    /// The files of [`PAGE_PATHS`], in that order (None when the page is off).
    page: Option<[Asset; 4]>,
    /// The client files found, by file name.
    client: Vec<(&'static str, Asset)>,
    /// Why the client bundle is not served, with how to install it (None when it is).
    client_missing: Option<String>,
}

impl Demo {
    /// Loads the client bundle from `config.socketio_client_dir` and, when the page is on, the
    /// embedded page. Logs where the page is and, if the bundle is missing, how to install it.
    pub fn from_config(config: &Config) -> Self {
        let page = config.demo_page_enabled().then(|| {
            [
                Asset::new(
                    Bytes::from_static(include_bytes!("../../static/index.html")),
                    "text/html; charset=utf-8",
                ),
                Asset::new(
                    Bytes::from_static(include_bytes!("../../static/app.js")),
                    "text/javascript; charset=utf-8",
                ),
                Asset::new(
                    Bytes::from_static(include_bytes!("../../static/view.js")),
                    "text/javascript; charset=utf-8",
                ),
                Asset::new(
                    Bytes::from_static(include_bytes!("../../static/app.css")),
                    "text/css; charset=utf-8",
                ),
            ]
        });
        let dir = &config.socketio_client_dir;
        let (client, client_missing) = if dir.as_os_str().is_empty() {
            (
                Vec::new(),
                Some("serving socket.io-client is off (SOCKETIO_CLIENT_DIR is empty)".to_owned()),
            )
        } else {
            load_client(dir)
        };
        if page.is_some() {
            tracing::info!(
                "demo chat page on: open http://localhost:{}/ in two windows (DEMO_PAGE=false turns it off)",
                config.port
            );
            if let Some(why) = &client_missing {
                tracing::warn!("{why}");
            }
        } else if let Some(why) = &client_missing {
            tracing::debug!("{why}");
        }
        Self {
            page,
            client,
            client_missing,
        }
    }

    /// Answers a request for one of these files, or None when the path is not one of them.
    pub fn handle(&self, req: &Request<hyper::body::Incoming>) -> Option<Response<Full<Bytes>>> {
        let path = req.uri().path();
        let wanted = if let Some(name) = path.strip_prefix("/socket.io/") {
            Wanted::Client(CLIENT_FILES.iter().find(|f| **f == name)?)
        } else {
            let index = PAGE_PATHS.iter().position(|p| *p == path)?;
            let assets = self.page.as_ref()?;
            Wanted::Page(&assets[index], index == 0)
        };
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut resp = empty(StatusCode::METHOD_NOT_ALLOWED);
            resp.headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Some(resp);
        }
        Some(match wanted {
            Wanted::Page(asset, is_html) => {
                let mut resp = asset.respond(req);
                if is_html {
                    resp.headers_mut()
                        .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
                    resp.headers_mut().insert(
                        HeaderName::from_static("referrer-policy"),
                        HeaderValue::from_static("no-referrer"),
                    );
                }
                resp
            }
            Wanted::Client(name) => match self.client.iter().find(|(n, _)| *n == name) {
                Some((_, asset)) => asset.respond(req),
                None => with_type(
                    StatusCode::NOT_FOUND,
                    self.client_missing
                        .clone()
                        .unwrap_or_else(|| format!("{name} is not in the client folder")),
                    "text/plain; charset=utf-8",
                ),
            },
        })
    }
}

/// A file the request names.
enum Wanted<'a> {
    Page(&'a Asset, bool),
    Client(&'static str),
}

/// Reads the client files found in `dir`; the second value says why the bundle is not served
/// (and how to install it) when `socket.io.min.js` or `socket.io.js` is missing.
fn load_client(dir: &Path) -> (Vec<(&'static str, Asset)>, Option<String>) {
    let mut files = Vec::new();
    for name in CLIENT_FILES {
        let path = dir.join(name);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > MAX_CLIENT_FILE => {
                tracing::warn!(path = %path.display(), bytes = meta.len(), "client file too large, not served");
            }
            Ok(_) => match std::fs::read(&path) {
                Ok(bytes) => {
                    let content_type = if name.ends_with(".map") {
                        "application/json; charset=utf-8"
                    } else {
                        "application/javascript; charset=utf-8"
                    };
                    files.push((name, Asset::new(Bytes::from(bytes), content_type)));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read client file");
                }
            },
            Err(_) => {}
        }
    }
    let complete = ["socket.io.js", "socket.io.min.js"]
        .iter()
        .all(|want| files.iter().any(|(name, _)| name == want));
    let missing = (!complete).then(|| {
        format!(
            "socket.io-client is not installed at {}: run `make interop-deps` (or \
             `bash scripts/interop-deps.sh --node-only`; both need npm) in the chatwire \
             checkout, or point SOCKETIO_CLIENT_DIR at a socket.io-client `dist` folder, then \
             restart the server",
            dir.display()
        )
    });
    (files, missing)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn etag_changes_with_the_content() {
        let a = Asset::new(Bytes::from_static(b"one"), "text/plain");
        let b = Asset::new(Bytes::from_static(b"two"), "text/plain");
        let a2 = Asset::new(Bytes::from_static(b"one"), "text/plain");
        assert_ne!(a.etag, b.etag);
        assert_eq!(a.etag, a2.etag);
    }

    #[test]
    fn a_missing_folder_says_how_to_install() {
        let (files, missing) = load_client(Path::new("/nonexistent/chatwire-client"));
        assert!(files.is_empty());
        let why = missing.unwrap();
        assert!(why.contains("make interop-deps") && why.contains("/nonexistent/chatwire-client"));
    }
}
