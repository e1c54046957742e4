// Helpers shared by the interop scripts: load the real socket.io-client from tools/node, wait for
// events with a deadline, and report checks as lines the Rust tests read:
//   "ok <check>" for each passed check, "PASS" at the end (exit 0), "FAIL <reason>" (exit 1).
"use strict";

const path = require("path");

const clientPath = path.join(__dirname, "..", "..", "..", "tools", "node", "node_modules", "socket.io-client");
let client;
try {
  client = require(clientPath);
} catch (e) {
  console.log(`FAIL socket.io-client not installed at ${clientPath}: run scripts/interop-deps.sh`);
  process.exit(1);
}

const BASE_URL = process.env.BASE_URL || "http://127.0.0.1:3000";
const STEP_MS = Number(process.env.STEP_TIMEOUT_MS || 5000);

function env(name) {
  const v = process.env[name];
  if (v === undefined || v === "") fail(`environment variable ${name} is not set`);
  return v;
}

function fail(reason) {
  console.log(`FAIL ${reason}`);
  process.exit(1);
}

function ok(check) {
  console.log(`ok ${check}`);
}

function check(cond, what, detail) {
  if (!cond) fail(`${what}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
  ok(what);
}

// Resolves with the first `event` on `emitter` whose payload passes `filter`, or fails the run.
function waitFor(emitter, event, what, filter = () => true, ms = STEP_MS) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(`timed out after ${ms} ms waiting for ${what}`), ms);
    const handler = (...all) => {
      // With connection state recovery on (the client holds a pid), events may carry their
      // offset as one more argument after the payload, as Socket.IO servers do: not payload.
      const args = emitter._pid && all.length > 1 && typeof all[all.length - 1] === "string" ? all.slice(0, -1) : all;
      if (!filter(...args)) return;
      clearTimeout(timer);
      emitter.off(event, handler);
      resolve(args.length > 1 ? args : args[0]);
    };
    emitter.on(event, handler);
  });
}

// Resolves when no `event` arrives for `ms`; fails the run if one does.
function expectNone(emitter, event, what, ms = 300) {
  return new Promise((resolve) => {
    const handler = (payload) => fail(`${what}: unexpected ${event} ${JSON.stringify(payload)}`);
    emitter.on(event, handler);
    setTimeout(() => {
      emitter.off(event, handler);
      ok(what);
      resolve();
    }, ms);
  });
}

// Runs `main`, prints PASS, exits; any exception is a FAIL. A whole-run deadline stops hangs.
function run(main, totalMs = 30000) {
  setTimeout(() => fail(`whole run exceeded ${totalMs} ms`), totalMs).unref();
  main().then(
    () => {
      console.log("PASS");
      process.exit(0);
    },
    (e) => fail(`exception: ${e && e.stack ? e.stack : e}`),
  );
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Resolves once `cond()` holds (polled every `every` ms), or fails the run after `ms`.
async function until(cond, what, ms = STEP_MS, every = 5) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

// Waits until A and B are connected, then has A join `conversationId` and waits for its reply.
async function connectThenJoin(a, b, conversationId) {
  const bConnected = waitFor(b, "connection:success", "B connected");
  await waitFor(a, "connection:success", "A connected");
  await bConnected;
  const joined = waitFor(a, "conversation:joined", "A joined");
  a.emit("conversation:join", { conversationId });
  await joined;
}

// A /chat socket over WebSocket as `token`'s user; `quickReconnect`: back within 100 ms after a
// drop (the recovery tests drop its transport and time its return).
function chatSocket(baseUrl, token, quickReconnect = false) {
  const opts = { auth: { token }, transports: ["websocket"] };
  if (quickReconnect) Object.assign(opts, { reconnectionDelay: 50, reconnectionDelayMax: 100 });
  return client.io(`${baseUrl}/chat`, opts);
}

// A REST read (PUT /api/chat/conversations/:id/read) up to the newest message, as `token`'s user:
// fails the script unless it answers 200; returns the message id read up to.
async function restRead(baseUrl, token, conversationId) {
  const res = await fetch(`${baseUrl}/api/chat/conversations/${conversationId}/read`, {
    method: "PUT",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: "{}",
  });
  const body = await res.json().catch(() => ({}));
  if (res.status !== 200) fail(`REST read as ${token} answered ${res.status} ${JSON.stringify(body)}`);
  return body.messageId;
}

module.exports = { io: client.io, Manager: client.Manager, BASE_URL, env, fail, ok, check, waitFor, expectNone, restRead, chatSocket, sleep, until, connectThenJoin, run };
