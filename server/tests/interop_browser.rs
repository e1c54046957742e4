//! End-to-end in a real browser: headless Chromium loads a page that uses the socket.io-client
//! browser bundle against chatwire from another origin, the way the guide's front ends run:
//! XHR long-polling then WebSocket, CORS with credentials, a preflighted REST call; and a page
//! from a refused origin that can neither connect nor call the API. Driver:
//! `tests/interop/browser.js`; page: `tests/interop/browser_page.html`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "interop/harness.rs"]
mod harness;

use harness::*;

/// The Chromium binary, if installed (`CHROMIUM` overrides the name).
fn chromium() -> Option<String> {
    let name = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()?;
    found
        .status
        .success()
        .then(|| String::from_utf8_lossy(&found.stdout).trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guide_client_in_a_real_browser() {
    ensure_clients();
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing under CI: scripts/interop-deps.sh installs it as root"
        );
        eprintln!("SKIPPED guide_client_in_a_real_browser: chromium is not installed");
        return;
    };
    let server = start_server().await;
    let id = create_direct(server.addr, (61, "influencer"), (62, "brand")).await;
    let envs = [("CONVERSATION_ID", id.to_string()), ("CHROMIUM", chromium)];
    let report = run_script(&node(), "browser.js", &[], &base_url(server.addr), &envs).await;
    report.assert_passed(&[
        "both connect from a cross-origin page (B with credentials)",
        "A upgraded from XHR polling to WebSocket in the browser",
        "message:sent with the tempId at A and message:new at B",
        "preflighted fetch of GET /api/chat/conversations is allowed by CORS",
        "a page from a refused origin cannot connect",
        "nor over WebSocket only",
        "its REST calls are blocked by CORS",
    ]);
    server.shutdown().await;
}
