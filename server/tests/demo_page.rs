//! The demo chat page and the socket.io-client bundle over HTTP: when the page is on (dev
//! tokens, or `DEMO_PAGE`), what the client files answer (bytes from the configured folder, an
//! ETag, 304 on revalidation, HEAD), and the install hint when the bundle is missing. The page
//! itself is driven in a real browser by `interop_browser.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{TestServer, http};

/// A client folder with small stand-in bundles (the real ones are tested in the browser).
fn client_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatwire-client-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("socket.io.js"),
        "/* full */ window.io = function () {};",
    )
    .unwrap();
    std::fs::write(dir.join("socket.io.min.js"), "window.io=function(){};").unwrap();
    std::fs::write(dir.join("socket.io.min.js.map"), r#"{"version":3}"#).unwrap();
    dir
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

#[tokio::test]
async fn page_is_served_while_dev_tokens_are_on() {
    let dir = client_dir("page");
    let s = TestServer::with(|c| c.socketio_client_dir = dir.clone()).await;
    let page = http(s.addr, "GET", "/", "", b"").await;
    assert_eq!(page.status, 200);
    assert!(page.headers.contains("content-type: text/html"));
    assert!(header(&page.headers, "content-security-policy").is_some());
    let html = page.text();
    assert!(html.contains(r#"<script src="/socket.io/socket.io.min.js">"#));
    assert!(html.contains(r#"<label for="message-input""#));
    for (path, kind) in [
        ("/demo/app.js", "text/javascript"),
        ("/demo/view.js", "text/javascript"),
        ("/demo/app.css", "text/css"),
    ] {
        let r = http(s.addr, "GET", path, "", b"").await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.headers.contains(kind), "{path}: {}", r.headers);
        assert!(!r.body.is_empty());
    }
    let post = http(s.addr, "POST", "/", "", b"").await;
    assert_eq!(post.status, 405);
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn client_bundle_is_served_with_an_etag_and_revalidated() {
    let dir = client_dir("etag");
    let s = TestServer::with(|c| c.socketio_client_dir = dir.clone()).await;
    let min = http(s.addr, "GET", "/socket.io/socket.io.min.js", "", b"").await;
    assert_eq!(min.status, 200);
    assert_eq!(min.text(), "window.io=function(){};");
    assert!(min.headers.contains("content-type: application/javascript"));
    let etag = header(&min.headers, "etag").expect("an etag").to_owned();
    let again = http(
        s.addr,
        "GET",
        "/socket.io/socket.io.min.js",
        &format!("If-None-Match: {etag}\r\n"),
        b"",
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let stale = http(
        s.addr,
        "GET",
        "/socket.io/socket.io.min.js",
        "If-None-Match: \"something-else\"\r\n",
        b"",
    )
    .await;
    assert_eq!(stale.status, 200);
    let full = http(s.addr, "GET", "/socket.io/socket.io.js", "", b"").await;
    assert_eq!(full.status, 200);
    assert!(full.text().starts_with("/* full */"));
    assert_ne!(header(&full.headers, "etag").unwrap(), etag);
    let map = http(s.addr, "GET", "/socket.io/socket.io.min.js.map", "", b"").await;
    assert_eq!((map.status, map.text().as_str()), (200, r#"{"version":3}"#));
    let head = http(s.addr, "HEAD", "/socket.io/socket.io.min.js", "", b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // Other names under /socket.io/ are not files; the Engine.IO endpoint still answers.
    let other = http(s.addr, "GET", "/socket.io/../Cargo.toml", "", b"").await;
    assert_eq!(other.status, 404);
    let eio = http(
        s.addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        "",
        b"",
    )
    .await;
    assert_eq!(eio.status, 200);
    assert!(eio.text().starts_with("0{"));
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_missing_bundle_answers_how_to_install_it() {
    let s = TestServer::with(|c| {
        c.socketio_client_dir = PathBuf::from("/nonexistent/socket.io-client/dist");
    })
    .await;
    let r = http(s.addr, "GET", "/socket.io/socket.io.min.js", "", b"").await;
    assert_eq!(r.status, 404);
    let text = r.text();
    assert!(text.contains("make interop-deps"), "{text}");
    assert!(
        text.contains("/nonexistent/socket.io-client/dist"),
        "{text}"
    );
    // The page still loads and shows that text itself.
    assert_eq!(http(s.addr, "GET", "/", "", b"").await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn page_is_off_with_jwt_only_unless_demo_page_is_set() {
    let dir = client_dir("off");
    let jwt_only = |c: &mut chatwire::config::Config| {
        c.dev_tokens = None;
        c.jwt_secret = Some("0123456789abcdef0123456789abcdef".into());
        c.socketio_client_dir = dir.clone();
    };
    let s = TestServer::with(jwt_only).await;
    assert_eq!(http(s.addr, "GET", "/", "", b"").await.status, 404);
    assert_eq!(
        http(s.addr, "GET", "/demo/app.js", "", b"").await.status,
        404
    );
    // The client bundle is still served, as Node's serveClient does by default.
    let client = http(s.addr, "GET", "/socket.io/socket.io.min.js", "", b"").await;
    assert_eq!(client.status, 200);
    s.stop().await;

    let s = TestServer::with(|c| {
        jwt_only(c);
        c.demo_page = Some(true);
    })
    .await;
    assert_eq!(http(s.addr, "GET", "/", "", b"").await.status, 200);
    s.stop().await;

    let s = TestServer::with(|c| c.demo_page = Some(false)).await;
    assert_eq!(http(s.addr, "GET", "/", "", b"").await.status, 404);
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
