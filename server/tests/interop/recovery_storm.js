// Recovery storm with the real socket.io-client: N clients (influencers 1..N) in one group with
// brand SENDER, all in its room; every client drops its transport, SENDER sends MISSED messages,
// then all N reconnect at once. Each must recover with exactly the missed messages, in id order.
// Prints "ok storm: ..." with the time until the last client recovered and the p50/p99 of the
// per-client recovery latency (from its reconnect call to its "connect" event).
//
// Environment: BASE_URL, CONVERSATION_ID, N, MISSED, SENDER_TOKEN.
"use strict";

const { io, env, fail, ok, check, waitFor, run } = require("./common");

const URL = `${env("BASE_URL")}/chat`;
const CONVERSATION_ID = Number(env("CONVERSATION_ID"));
const N = Number(env("N"));
const MISSED = Number(env("MISSED"));
const STEP_MS = Number(process.env.STEP_TIMEOUT_MS || 5000) * 6;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(cond, what) {
  const end = Date.now() + STEP_MS;
  while (!cond()) {
    if (Date.now() > end) fail(`timed out after ${STEP_MS} ms waiting for ${what}`);
    await sleep(10);
  }
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

async function main() {
  const clients = [];
  for (let i = 1; i <= N; i++) {
    const s = io(URL, {
      auth: { token: `${i}:influencer` },
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
    });
    const c = { s, got: [], joined: false };
    s.on("message:new", (m) => c.got.push(m.id));
    s.on("conversation:joined", () => {
      c.joined = true;
    });
    s.on("connection:success", () => s.emit("conversation:join", { conversationId: CONVERSATION_ID }));
    clients.push(c);
  }
  await until(() => clients.every((c) => c.joined), `${N} clients joined`);
  ok(`${N} clients joined the room`);
  const sender = io(URL, { auth: { token: env("SENDER_TOKEN") }, transports: ["websocket"] });
  await waitFor(sender, "connection:success", "sender connected");
  for (const c of clients) {
    const dropped = waitFor(c.s, "disconnect", "a client dropped");
    c.s.io.engine.close();
    await dropped;
  }
  ok(`${N} clients dropped their transport`);
  const sent = [];
  for (let i = 0; i < MISSED; i++) {
    const tempId = `m${i}`;
    const ack = waitFor(sender, "message:sent", `message:sent ${i}`, (p) => p.tempId === tempId);
    sender.emit("message:send", { conversationId: CONVERSATION_ID, content: `missed ${i}`, tempId });
    const r = await ack;
    sent.push((Array.isArray(r) ? r[0] : r).message.id);
  }
  for (const c of clients) c.got.length = 0;
  const start = Date.now();
  const latencies = [];
  let recovered = 0;
  await Promise.all(
    clients.map(
      (c) =>
        new Promise((resolve) => {
          const t0 = Date.now();
          c.s.once("connect", () => {
            latencies.push(Date.now() - t0);
            if (c.s.recovered) recovered++;
            resolve();
          });
          c.s.connect();
        }),
    ),
  );
  const total = Date.now() - start;
  latencies.sort((a, b) => a - b);
  check(recovered === N, `all ${N} clients recovered`, { recovered });
  const want = JSON.stringify(sent);
  const exact = clients.filter((c) => JSON.stringify(c.got) === want).length;
  check(exact === N, `every client got the ${MISSED} missed messages exactly once, in id order`, {
    exact,
    example: clients.find((c) => JSON.stringify(c.got) !== want)?.got,
  });
  ok(
    `storm: ${N} clients x ${MISSED} missed messages recovered in ${total} ms; ` +
      `per client p50 ${pct(latencies, 50)} ms, p99 ${pct(latencies, 99)} ms, max ${latencies[latencies.length - 1]} ms`,
  );
  for (const c of clients) c.s.close();
  sender.close();
}

run(main, 240000);
