// Runs browser_page.html in headless Chromium against chatwire, from two origins:
//   http://127.0.0.1:<port>  (a localhost page: allowed by the default origin policy, cross-origin
//                             to chatwire because the port differs, so CORS is exercised)
//   http://evil.test:<port>  (mapped to 127.0.0.1 in Chromium: refused by the origin policy)
// The page is served by this script; Chromium is driven over the DevTools protocol.
// Env: BASE_URL, CONVERSATION_ID, CHROMIUM (default: chromium). Prints ok/FAIL/PASS lines.
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");
const { BASE_URL, env, fail, run } = require("./common");
const { launchChromium, cdp } = require("./cdp");

const clientBundle = path.join(__dirname, "..", "..", "..", "tools", "node", "node_modules",
  "socket.io-client", "dist", "socket.io.min.js");

function serveStatic() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/page.html") {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
      res.end(fs.readFileSync(path.join(__dirname, "browser_page.html")));
    } else if (url.pathname === "/socket.io.min.js") {
      res.writeHead(200, { "Content-Type": "application/javascript" });
      res.end(fs.readFileSync(clientBundle));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

async function runPage(send, url) {
  const { targetId } = await send("Target.createTarget", { url });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const deadline = Date.now() + 30000;
  let printed = 0;
  for (;;) {
    const { result } = await send("Runtime.evaluate",
      { expression: "JSON.stringify(window.__report || null)", returnByValue: true }, sessionId);
    const report = result && result.value ? JSON.parse(result.value) : null;
    if (report) {
      for (; printed < report.lines.length; printed++) console.log(report.lines[printed]);
      if (report.done) {
        if (report.failed) process.exit(1);
        break;
      }
    }
    if (Date.now() > deadline) fail(`page ${url} did not finish in 30 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await send("Target.closeTarget", { targetId });
}

run(async () => {
  const cid = env("CONVERSATION_ID");
  const server = await serveStatic();
  const port = server.address().port;
  const send = await cdp(await launchChromium(["--host-resolver-rules=MAP evil.test 127.0.0.1"]));
  const q = `base=${encodeURIComponent(BASE_URL)}&cid=${cid}`;
  // The page's own "PASS" lines are printed as "ok page ..." markers; the final PASS is ours.
  const realLog = console.log;
  console.log = (line) => realLog(line === "PASS" ? "ok page finished" : line);
  await runPage(send, `http://127.0.0.1:${port}/page.html?${q}&mode=allowed`);
  await runPage(send, `http://evil.test:${port}/page.html?${q}&mode=refused`);
  console.log = realLog;
  server.close();
}, 90000);
