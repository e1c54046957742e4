// Drives chatwire's own demo chat page (served at /) in headless Chromium, as two people in two
// browser contexts would: sign in with the keyboard, start a chat, send, see the notification,
// read receipts, typing, a message sent over REST arriving live, a refused send with Retry,
// reload with history and "load older", search, phone width, and the peer's dot turning gray
// when the other window closes. Every step asserts on what the page shows and saves a
// screenshot to SHOT_DIR. First, a server without the client bundle (NO_CLIENT_URL): the page
// says how to install it. Env: BASE_URL, NO_CLIENT_URL, SHOT_DIR, CHROMIUM. Prints ok/FAIL/PASS.
"use strict";

const fs = require("fs");
const path = require("path");
const { BASE_URL, env, fail, ok, run } = require("./common");
const { launchChromium, cdp } = require("./cdp");

const STEP_MS = Number(process.env.STEP_TIMEOUT_MS || 10000);
const A = { id: 71, type: "influencer" };
const B = { id: 72, type: "brand" };

let send;
let shotDir;
let shots = 0;

// One browser window in its own context (own cookies and storage): a separate person.
async function openWindow(width, height, base = BASE_URL) {
  const { browserContextId } = await send("Target.createBrowserContext");
  const { targetId } = await send("Target.createTarget", { url: "about:blank", browserContextId });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const win = { browserContextId, targetId, sessionId };
  await viewport(win, width, height);
  await send("Page.enable", {}, sessionId);
  await send("Page.navigate", { url: `${base}/` }, sessionId);
  return win;
}

function viewport(win, width, height) {
  return send("Emulation.setDeviceMetricsOverride",
    { width, height, deviceScaleFactor: 1, mobile: width < 500 }, win.sessionId);
}

async function evaluate(win, expression) {
  const { result, exceptionDetails } = await send("Runtime.evaluate",
    { expression, returnByValue: true, awaitPromise: true }, win.sessionId);
  if (exceptionDetails) throw new Error(`${expression}: ${JSON.stringify(exceptionDetails.exception || exceptionDetails)}`);
  return result.value;
}

// Polls `expression` in the page until it is truthy; returns its value.
async function waitUntil(win, expression, what, ms = STEP_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await evaluate(win, expression);
      if (last) return last;
    } catch (e) {
      last = e.message; // the page may be navigating
    }
    if (Date.now() > deadline) fail(`timed out after ${ms} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function shot(win, name) {
  const { data } = await send("Page.captureScreenshot", { format: "png" }, win.sessionId);
  shots += 1;
  const file = path.join(shotDir, `${String(shots).padStart(2, "0")}-${name}.png`);
  fs.writeFileSync(file, Buffer.from(data, "base64"));
}

// Both windows side by side in one picture (two-windows.png, the README's screenshot).
async function sideBySide(left, right) {
  const [w, h, gap] = [760, 520, 12];
  for (const win of [left, right]) await viewport(win, w, h);
  await new Promise((r) => setTimeout(r, 150));
  const images = [];
  for (const win of [left, right]) {
    images.push((await send("Page.captureScreenshot", { format: "png" }, win.sessionId)).data);
  }
  for (const win of [left, right]) await viewport(win, 1000, 640);
  const { browserContextId } = await send("Target.createBrowserContext");
  const { targetId } = await send("Target.createTarget", { url: "about:blank", browserContextId });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const canvas = { sessionId };
  await viewport(canvas, 2 * w + 3 * gap, h + 2 * gap);
  await evaluate(canvas, `(async () => {
    document.body.style.cssText = "margin:0;padding:${gap}px;display:flex;gap:${gap}px;background:#cbd5e1";
    for (const src of ${JSON.stringify(images.map((d) => `data:image/png;base64,${d}`))}) {
      const img = new Image(); img.src = src; img.style.cssText = "box-shadow:0 2px 8px #0004";
      document.body.append(img); await img.decode();
    }
  })()`);
  const { data } = await send("Page.captureScreenshot", { format: "png" }, sessionId);
  fs.writeFileSync(path.join(shotDir, "two-windows.png"), Buffer.from(data, "base64"));
  await send("Target.disposeBrowserContext", { browserContextId });
}

// Keyboard input: focus an element, then real key events / text insertion.
async function focus(win, selector) {
  const found = await evaluate(win, `(() => { const e = document.querySelector(${JSON.stringify(selector)});
    if (!e) return false; e.focus(); return document.activeElement === e; })()`);
  if (!found) fail(`cannot focus ${selector}`);
}

async function type(win, selector, text) {
  await focus(win, selector);
  await evaluate(win, `document.activeElement.select ? document.activeElement.select() : null`);
  await send("Input.insertText", { text }, win.sessionId);
}

async function press(win, key) {
  const codes = { Enter: 13, ArrowRight: 39, " ": 32 };
  const base = { key, code: key === " " ? "Space" : key, windowsVirtualKeyCode: codes[key], nativeVirtualKeyCode: codes[key] };
  const text = key === "Enter" ? "\r" : key === " " ? " " : undefined;
  await send("Input.dispatchKeyEvent", { type: "keyDown", ...base, ...(text ? { text } : {}) }, win.sessionId);
  await send("Input.dispatchKeyEvent", { type: "keyUp", ...base }, win.sessionId);
}

const text = (selector) => `((document.querySelector(${JSON.stringify(selector)}) || {}).textContent || "")`;
const msgs = `[...document.querySelectorAll("#message-list .msg")].map((m) => ({
  id: m.dataset.id, text: m.querySelector(".text").textContent, mine: m.classList.contains("mine"),
  cls: m.className, receipt: (m.querySelector(".receipt") || {}).textContent || "" }))`;

async function rest(method, urlPath, token, body) {
  const res = await fetch(`${BASE_URL}${urlPath}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json();
  if (!res.ok) fail(`${method} ${urlPath} answered ${res.status} ${JSON.stringify(data)}`);
  return data;
}

async function signIn(win, who) {
  await waitUntil(win, `!document.getElementById("signin").hidden`, "the sign-in form");
  if (who.type === "brand") {
    await focus(win, `input[name=userType][value=influencer]`);
    await press(win, "ArrowRight"); // radio group: the arrow key moves and checks
  }
  await type(win, "#signin-id", String(who.id));
  await press(win, "Enter");
  await waitUntil(win, `document.getElementById("status").textContent === "connected"`, `${who.type} ${who.id} connected`);
}

run(async () => {
  shotDir = env("SHOT_DIR");
  fs.mkdirSync(shotDir, { recursive: true });
  send = await cdp(await launchChromium());

  const bare = await openWindow(1000, 640, env("NO_CLIENT_URL"));
  const hint = await waitUntil(bare, `(() => { const p = document.getElementById("problem");
    return !p.hidden && p.textContent.includes("make interop-deps") && p.textContent; })()`, "the install hint");
  await shot(bare, "no-client-bundle");
  await send("Target.disposeBrowserContext", { browserContextId: bare.browserContextId });
  ok(`without the client bundle the page says how to install it: ${hint.split("\n")[1].slice(0, 60)}...`);

  const a = await openWindow(1000, 640);
  const b = await openWindow(1000, 640);
  await waitUntil(a, `typeof io === "function" && !document.getElementById("signin").hidden`,
    "the page with the client bundle served by chatwire");
  await shot(a, "sign-in");
  await signIn(a, A);
  await signIn(b, B);
  const who = await evaluate(a, text("#whoami"));
  if (!who.includes("influencer 71")) fail(`A's header says ${JSON.stringify(who)}`);
  ok("two windows sign in with the keyboard as influencer 71 and brand 72");

  // A starts a 1:1 chat with brand 72 and sends; the bubble is reconciled with the stored id.
  await type(a, "#new-id", String(B.id));
  await press(a, "Enter");
  await waitUntil(a, `${text("#chat-title")} === "brand_72"`, "A's chat with brand_72 open");
  await type(a, "#message-input", "Hello from A");
  await press(a, "Enter");
  const sent = await waitUntil(a, `(() => { const m = ${msgs}; return m.length === 1 && m[0].id && m[0].mine && m[0].receipt === "✓" && m; })()`,
    "A's bubble confirmed by message:sent (an id and one check)");
  const convId = Number(await evaluate(a, `document.querySelector(".conv[aria-current=true]").dataset.id`));
  ok(`A's message is shown at once and confirmed with id ${sent[0].id}`);

  // B was not in the room: message:notification gives a badge, the last message and the title.
  await waitUntil(b, `(() => { const c = document.querySelector('.conv[data-id="${convId}"]');
    return c && c.querySelector(".badge") && c.querySelector(".badge").textContent === "1"
      && c.querySelector(".last").textContent === "Hello from A"; })()`, "B's unread badge and last message");
  const title = await evaluate(b, "document.title");
  if (title !== "(1) chatwire") fail(`B's title is ${JSON.stringify(title)}`);
  await shot(b, "notification-badge");
  ok("B sees the new conversation with an unread badge, the last message and (1) in the title");

  // B opens it (keyboard): history loads, the badge goes, A's message gets a double check.
  await focus(b, `.conv[data-id="${convId}"]`);
  await press(b, "Enter");
  await waitUntil(b, `(() => { const m = ${msgs}; return m.length === 1 && m[0].text === "Hello from A" && !m[0].mine; })()`,
    "B's history with A's message");
  await waitUntil(b, `!document.querySelector(".badge") && document.title === "chatwire"`, "B's badge cleared");
  await waitUntil(a, `(() => { const m = ${msgs}; return m[0].receipt === "✓✓" && m; })()`, "A's read receipt");
  await shot(a, "read-receipt");
  ok("B opening the chat shows a read receipt (double check) on A's message");

  await waitUntil(a, `document.getElementById("peer-dot").classList.contains("online") && ${text("#peer-status")} === "online"`, "B online in A's header");
  await waitUntil(b, `document.getElementById("peer-dot").classList.contains("online")`, "A online in B's header");
  ok("each sees the other online (green dot)");

  // Typing: B types without sending; A sees it, and it goes 2 s after the last keystroke.
  const typedAt = Date.now();
  await type(b, "#message-input", "Hi A, brand here");
  await waitUntil(a, `${text("#typing")}.includes("brand_72 is typing")`, "the typing indicator at A");
  await shot(a, "typing");
  await sideBySide(a, b);
  await waitUntil(a, `${text("#typing")} === ""`, "the typing indicator to go", 6000);
  const gone = Date.now() - typedAt;
  if (gone < 1500) fail(`the typing indicator went after ${gone} ms, before the 2 s stop`);
  ok(`A sees "brand_72 is typing…", gone ${gone} ms later (the guide's 2 s stop)`);
  await focus(b, "#message-input");
  await press(b, "Enter");
  await waitUntil(a, `${msgs}.some((m) => m.text === "Hi A, brand here" && !m.mine)`, "B's message at A");
  ok("B's message arrives live at A");

  // A message sent over REST (another device of B) appears live in both windows.
  await rest("POST", "/api/chat/messages", `${B.id}:${B.type}`, { conversationId: convId, content: "sent over REST", tempId: "rest-1" });
  await waitUntil(a, `${msgs}.some((m) => m.text === "sent over REST" && !m.mine)`, "the REST message at A");
  await waitUntil(b, `${msgs}.some((m) => m.text === "sent over REST" && m.mine)`, "the REST message at B, as B's own");
  await shot(a, "rest-message-live");
  ok("a message sent with POST /api/chat/messages appears live in both windows");

  // A refused send (over the server's MAX_MESSAGE_CHARS): the bubble says why and offers Retry.
  await type(a, "#message-input", "x".repeat(250));
  await press(a, "Enter");
  const failed = await waitUntil(a, `(() => { const f = document.querySelector(".msg.failed");
    return f && f.querySelector(".retry") && f.querySelector(".error").textContent; })()`, "the failed bubble with Retry");
  await shot(a, "send-error-retry");
  ok(`a refused send shows the error (${failed}) with a Retry button`);

  // History: 40 more messages, then B reloads; the chat reopens with the latest page and
  // "Load older" brings back the first message.
  for (let i = 1; i <= 40; i++) {
    await rest("POST", "/api/chat/messages", `${A.id}:${A.type}`, { conversationId: convId, content: `history ${i}` });
  }
  await waitUntil(b, `${msgs}.some((m) => m.text === "history 40")`, "the 40 messages live at B");
  await send("Page.reload", {}, b.sessionId);
  await waitUntil(b, `document.getElementById("status").textContent === "connected" && ${msgs}.some((m) => m.text === "history 40")`,
    "B's chat after the reload");
  const afterReload = await evaluate(b, msgs);
  if (afterReload.some((m) => m.text === "Hello from A")) fail("the first page after a reload should not reach the first message");
  await waitUntil(b, `!document.getElementById("older").hidden`, "the Load older button");
  await focus(b, "#older");
  await press(b, "Enter");
  await waitUntil(b, `${msgs}[0] && ${msgs}[0].text === "Hello from A"`, "the first message after Load older");
  const all = await evaluate(b, msgs);
  await shot(b, "reload-load-older");
  ok(`reloading keeps the session and history (${afterReload.length} messages), Load older reaches the first (${all.length} in all)`);

  // Search (?q=): B looks for "hello".
  await type(b, "#search-q", "HELLO");
  await press(b, "Enter");
  await waitUntil(b, `(() => { const m = ${msgs}; return m.length === 1 && m[0].text === "Hello from A"
    && ${text("#search-info")}.startsWith("1 message matching"); })()`, "the search result");
  await shot(b, "search");
  await focus(b, "#search-clear");
  await press(b, "Enter");
  await waitUntil(b, `${msgs}.length === ${all.length}`, "the conversation back after the search");
  ok("search finds the one matching message, case-insensitively, and goes back to the chat");

  // Phone width: one column; the conversation fills the screen with a back button.
  await viewport(b, 390, 760);
  await waitUntil(b, `getComputedStyle(document.getElementById("sidebar")).display === "none"
    && getComputedStyle(document.getElementById("back")).display !== "none"
    && document.getElementById("message-input").getBoundingClientRect().right <= 390`, "the phone layout");
  await shot(b, "phone-width");
  await focus(b, "#back");
  await press(b, "Enter");
  await waitUntil(b, `getComputedStyle(document.getElementById("sidebar")).display !== "none"`, "the list at phone width");
  await shot(b, "phone-list");
  await focus(b, `.conv[data-id="${convId}"]`);
  await press(b, "Enter");
  await viewport(b, 1000, 640);
  ok("at phone width the page shows one column: the chat with a back button, or the list");

  // B loses the network: the page says it is reconnecting; back online it catches up on what
  // A sent meanwhile.
  await send("Network.enable", {}, b.sessionId);
  await send("Network.emulateNetworkConditions",
    { offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: -1 }, b.sessionId);
  await waitUntil(b, `${text("#status")}.startsWith("reconnecting")`, "B's reconnecting state");
  await shot(b, "reconnecting");
  await type(a, "#message-input", "sent while B was away");
  await press(a, "Enter");
  await waitUntil(a, `${msgs}.some((m) => m.text === "sent while B was away" && m.id)`, "A's message stored");
  await send("Network.emulateNetworkConditions",
    { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 }, b.sessionId);
  await waitUntil(b, `${text("#status")} === "connected" && ${msgs}.some((m) => m.text === "sent while B was away")
    && ${text("#peer-status")} === "online"`, "B reconnected with the missed message and A online", 20000);
  ok("offline, B's page shows it is reconnecting; back online it shows the message it missed");

  // B starts a group; A, in another chat, gets a notification, then reads it with the sender's name.
  await focus(b, ".new-group summary");
  await press(b, "Enter");
  await type(b, "#group-title", "Launch team");
  await type(b, "#group-members", "influencer 71, brand 80");
  await press(b, "Enter");
  await waitUntil(b, `${text("#chat-title")} === "Launch team" && ${text("#peer-status")} === "3 members, 1 other online"`,
    "B's new group open");
  await type(b, "#message-input", "Welcome to the group");
  await press(b, "Enter");
  const groupId = Number(await waitUntil(b, `(() => { const m = ${msgs}; return m.length === 1 && m[0].id
    && document.querySelector(".conv[aria-current=true]").dataset.id; })()`, "B's group message stored"));
  await waitUntil(a, `(() => { const c = document.querySelector('.conv[data-id="${groupId}"]');
    return c && c.querySelector(".name").textContent === "Launch team" && c.querySelector(".badge")
      && c.querySelector(".badge").textContent === "1" && document.title === "(1) chatwire"; })()`,
    "the group with a badge at A");
  await shot(a, "group-notification");
  await focus(a, `.conv[data-id="${groupId}"]`);
  await press(a, "Enter");
  await waitUntil(a, `[...document.querySelectorAll("#message-list .msg")].some((m) =>
    m.querySelector(".from") && m.querySelector(".from").textContent === "brand_72"
    && m.querySelector(".text").textContent === "Welcome to the group")`, "the group message with its sender at A");
  await shot(a, "group");
  await focus(b, `.conv[data-id="${convId}"]`);
  await press(b, "Enter");
  await waitUntil(b, `${text("#chat-title")} === "influencer_71" && ${text("#peer-status")} === "online"`, "B back in the 1:1 chat");
  ok("a group started by B notifies A (badge and title) and shows each message's sender");

  // Every control has a name a screen reader can say.
  const unnamed = await evaluate(b, `[...document.querySelectorAll("input, select, textarea, button")]
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.textContent.trim()
      && !(e.type === "radio" && e.closest("label")))
    .map((e) => e.id || e.outerHTML.slice(0, 60))`);
  if (unnamed.length) fail(`controls without a label: ${JSON.stringify(unnamed)}`);
  ok("every control of the page is labelled");

  // A closes its window: B's dot turns gray.
  await send("Target.disposeBrowserContext", { browserContextId: a.browserContextId });
  await waitUntil(b, `!document.getElementById("peer-dot").classList.contains("online") && ${text("#peer-status")} === "offline"
    && !document.querySelector('.conv[data-id="${convId}"] .dot').classList.contains("online")`, "A offline at B");
  await shot(b, "peer-offline");
  ok("closing A's window turns A's dot gray at B (user:offline)");
}, 85000);
