// Recovery storm with the real socket.io-client: N clients (influencers 1..N), each in its own
// 1:1 conversation with brand SENDER and in its room; every client drops its transport, SENDER
// sends MISSED messages to each conversation, then all N reconnect at once. Each must recover
// with exactly its missed messages, in id order.
// Prints "ok storm: ..." with the time until the last client recovered and the p50/p99 of the
// per-client recovery latency (from its reconnect call to its "connect" event); the join and send
// lines say how long those phases took.
//
// Environment: BASE_URL, CONVERSATION_IDS (comma-separated, client i's is the i-th), MISSED,
// SENDER_TOKEN.
"use strict";

const { io, env, ok, check, waitFor, sleep, until, run } = require("./common");

const URL = `${env("BASE_URL")}/chat`;
const CONVERSATIONS = env("CONVERSATION_IDS").split(",").map(Number);
const N = CONVERSATIONS.length;
const IN_FLIGHT = 200;
const MISSED = Number(env("MISSED"));
const STEP_MS = Number(process.env.STEP_TIMEOUT_MS || 5000) * 6;

// Polls every 10 ms, for up to six steps (1,000 clients move at once).
const untilLong = (cond, what) => until(cond, what, STEP_MS, 10);

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

async function main() {
  const began = Date.now();
  const clients = [];
  for (let i = 1; i <= N; i++) {
    const s = io(URL, {
      auth: { token: `${i}:influencer` },
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
    });
    const conversationId = CONVERSATIONS[i - 1];
    const c = { s, got: [], joined: false, conversationId, sent: [] };
    s.on("message:new", (m) => c.got.push(m.id));
    s.on("conversation:joined", () => {
      c.joined = true;
    });
    s.on("connection:success", () => s.emit("conversation:join", { conversationId }));
    clients.push(c);
  }
  await untilLong(() => clients.every((c) => c.joined), `${N} clients joined`);
  ok(`${N} clients joined the room (in ${Date.now() - began} ms)`);
  const sender = io(URL, { auth: { token: env("SENDER_TOKEN") }, transports: ["websocket"] });
  await waitFor(sender, "connection:success", "sender connected");
  for (const c of clients) {
    const dropped = waitFor(c.s, "disconnect", "a client dropped");
    c.s.io.engine.close();
    await dropped;
  }
  ok(`${N} clients dropped their transport`);
  // MISSED messages to every conversation, at most IN_FLIGHT unanswered at a time.
  const byTemp = new Map();
  let answered = 0;
  sender.on("message:sent", (p) => {
    const c = byTemp.get(p.tempId);
    if (c) c.sent.push(p.message.id);
    answered++;
  });
  let issued = 0;
  const sending = Date.now();
  for (let round = 0; round < MISSED; round++) {
    for (const c of clients) {
      while (issued - answered >= IN_FLIGHT) await sleep(1);
      const tempId = `${c.conversationId}-${round}`;
      byTemp.set(tempId, c);
      sender.emit("message:send", { conversationId: c.conversationId, content: `missed ${round}`, tempId });
      issued++;
    }
  }
  await untilLong(() => answered === issued, `${issued} message:sent`);
  ok(`${issued} messages sent while the clients were away (in ${Date.now() - sending} ms)`);
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
  const exact = clients.filter(
    (c) => c.sent.length === MISSED && JSON.stringify(c.got) === JSON.stringify([...c.sent].sort((x, y) => x - y)),
  ).length;
  check(exact === N, `every client got the ${MISSED} missed messages exactly once, in id order`, {
    exact,
    example: clients.find((c) => JSON.stringify(c.got) !== JSON.stringify(c.sent))?.got,
  });
  ok(
    `storm: ${N} clients x ${MISSED} missed messages recovered in ${total} ms; ` +
      `per client p50 ${pct(latencies, 50)} ms, p99 ${pct(latencies, 99)} ms, max ${latencies[latencies.length - 1]} ms`,
  );
  for (const c of clients) c.s.close();
  sender.close();
}

run(main, 240000);
