// Headless Chromium over the DevTools protocol, shared by the browser tests (browser.js,
// browser_demo.js): start Debian's chromium (CHROMIUM overrides the name) with a throwaway
// profile, and a minimal protocol client over its browser WebSocket (flattened sessions).
"use strict";

const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");
const { fail } = require("./common");
const WebSocket = require(path.join(__dirname, "..", "..", "..", "tools", "node", "node_modules", "ws"));

// Profiles of earlier runs that the browser was still writing when they were removed (it is
// killed as the test exits, and its helper processes outlive it briefly): removed once they are
// an hour old, so test runs do not pile them up in the temp directory.
function removeStaleProfiles() {
  const tmp = os.tmpdir();
  for (const name of fs.readdirSync(tmp)) {
    if (!name.startsWith("chatwire-chromium-")) continue;
    const dir = path.join(tmp, name);
    try {
      if (Date.now() - fs.statSync(dir).mtimeMs > 3600 * 1000) {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    } catch (e) {
      // Another run's, removed meanwhile.
    }
  }
}

// Resolves with the DevTools WebSocket URL; the browser is killed when this process exits.
// Everything it writes goes under one temp directory (its profile, and its own temp files
// through TMPDIR), removed on exit.
function launchChromium(extraArgs = []) {
  removeStaleProfiles();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chatwire-chromium-"));
  const child = spawn(process.env.CHROMIUM || "chromium", [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--no-default-browser-check", `--user-data-dir=${dir}`,
    "--remote-debugging-port=0", ...extraArgs,
    "about:blank",
  ], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, TMPDIR: dir } });
  process.on("exit", () => {
    child.kill("SIGKILL");
    // Its helper processes may still write (and re-create the profile) for a moment after the
    // kill: remove, wait, and remove again while it comes back, for up to a second.
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 10; i++) {
      try {
        fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
      } catch (e) {
        // Being written as we remove it: the next round takes it.
      }
      Atomics.wait(pause, 0, 0, 100);
      if (!fs.existsSync(dir)) break;
    }
  });
  return new Promise((resolve) => {
    let buf = "";
    child.stderr.on("data", (d) => {
      buf += d;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(buf);
      if (m) resolve(m[1]);
    });
    child.on("error", (e) => fail(`cannot start chromium: ${e.message}`));
    child.on("exit", (code) => fail(`chromium exited (${code}): ${buf.slice(-500)}`));
  });
}

// Resolves with send(method, params, sessionId) -> Promise<result>.
function cdp(wsUrl) {
  const ws = new WebSocket(wsUrl, { maxPayload: 256 * 1024 * 1024 });
  let next = 1;
  const pending = new Map();
  ws.on("message", (raw) => {
    const msg = JSON.parse(raw);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(JSON.stringify(msg.error)));
      else resolve(msg.result);
    }
  });
  const send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
    const id = next++;
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ id, method, params, sessionId }));
  });
  return new Promise((resolve) => ws.on("open", () => resolve(send)));
}

module.exports = { launchChromium, cdp };
