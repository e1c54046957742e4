//! End-to-end in a real browser: headless Chromium loads a page that uses the socket.io-client
//! browser bundle against chatwire from another origin, the way the guide's front ends run:
//! XHR long-polling then WebSocket, CORS with credentials, a preflighted REST call; and a page
//! from a refused origin that can neither connect nor call the API. Driver:
//! `tests/interop/browser.js`; page: `tests/interop/browser_page.html`.
//!
//! And chatwire's own demo chat page (`/`, with the client bundle the server serves) in two
//! browser windows as two people: driver `tests/interop/browser_demo.js`, screenshots of each
//! step in `target/browser-demo/`.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_in_two_browser_windows() {
    ensure_clients();
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing under CI: scripts/interop-deps.sh installs it as root"
        );
        eprintln!("SKIPPED demo_page_in_two_browser_windows: chromium is not installed");
        return;
    };
    let server = start_server_with(|c| {
        // Short enough for the page's textarea to let a refused send through.
        c.max_message_chars = 200;
        c.socketio_client_dir = root().join("tools/node/node_modules/socket.io-client/dist");
    })
    .await;
    let bare = start_server_with(|c| {
        c.socketio_client_dir = std::path::PathBuf::from("/nonexistent/socket.io-client/dist");
    })
    .await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../browser-demo");
    let _ = std::fs::remove_dir_all(&shots);
    let envs = [
        ("CHROMIUM", chromium),
        ("SHOT_DIR", shots.display().to_string()),
        ("NO_CLIENT_URL", base_url(bare.addr)),
    ];
    let report = run_script(
        &node(),
        "browser_demo.js",
        &[],
        &base_url(server.addr),
        &envs,
    )
    .await;
    report.assert_passed(&[
        "without the client bundle the page says how to install it",
        "two windows sign in with the keyboard",
        "A's message is shown at once and confirmed",
        "B sees the new conversation with an unread badge, the last message and (1) in the title",
        "read receipt (double check)",
        "each sees the other online",
        "brand_72 is typing",
        "B's message arrives live at A",
        "POST /api/chat/messages appears live in both windows",
        "a refused send shows the error",
        "reloading keeps the session and history",
        "search finds the one matching message",
        "at phone width the page shows one column",
        "B's page shows it is reconnecting",
        "a group started by B notifies A",
        "every control of the page is labelled",
        "closing A's window turns A's dot gray at B",
    ]);
    let taken = std::fs::read_dir(&shots)
        .map(|d| d.filter_map(Result::ok).count())
        .unwrap_or(0);
    assert!(
        taken >= 10,
        "expected a screenshot per step in {}",
        shots.display()
    );
    server.shutdown().await;
    bare.shutdown().await;
}
