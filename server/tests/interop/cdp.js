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

// Resolves with the DevTools WebSocket URL; the browser is killed when this process exits.
function launchChromium(extraArgs = []) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chatwire-chromium-"));
  const child = spawn(process.env.CHROMIUM || "chromium", [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--no-default-browser-check", `--user-data-dir=${dir}`,
    "--remote-debugging-port=0", ...extraArgs,
    "about:blank",
  ], { stdio: ["ignore", "ignore", "pipe"] });
  process.on("exit", () => {
    child.kill("SIGKILL");
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    } catch (e) {
      // The browser may still be writing its profile as it dies; a leftover temp dir is harmless.
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
