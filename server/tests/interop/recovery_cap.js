// RECOVERY_MAX_EVENTS counts every replayed event, read receipts included, with the unmodified
// socket.io-client: A (influencer) is in the room; A drops its transport; B (brand) sends AWAY
// messages and reads the newest over REST, and A's other device reads it over REST. Recovering,
// A would be replayed AWAY `message:new` and two `message:read` (B's pointer and its own).
// EXPECT "recovered": A recovers and gets exactly those AWAY + 2 events before "connect".
// EXPECT "fresh" (the server's limit is below AWAY + 2): A connects normally and nothing is
// replayed, neither a message nor a receipt.
//
// Environment: BASE_URL, CONVERSATION_ID, A_TOKEN, B_TOKEN, AWAY, EXPECT.
"use strict";

const { env, check, waitFor, restRead, run, chatSocket, connectThenJoin, sleep } = require("./common");

const BASE_URL = env("BASE_URL");
const CONVERSATION_ID = Number(env("CONVERSATION_ID"));
const A_TOKEN = env("A_TOKEN");
const B_TOKEN = env("B_TOKEN");
const AWAY = Number(env("AWAY"));
const EXPECT = env("EXPECT");

async function send(b, content) {
  const tempId = `t-${content}`;
  const sent = waitFor(b, "message:sent", `message:sent for ${content}`, (p) => p.tempId === tempId);
  b.emit("message:send", { conversationId: CONVERSATION_ID, content, tempId });
  return (await sent).message;
}

// PUT /api/chat/conversations/:id/read with `token`, up to the newest message.
const readOverRest = (token) => restRead(BASE_URL, token, CONVERSATION_ID);

async function main() {
  const a = chatSocket(BASE_URL, A_TOKEN, true);
  const b = chatSocket(BASE_URL, B_TOKEN);
  // Every message:new and message:read A gets, and whether it came before "connect".
  const events = [];
  let connected = true;
  for (const name of ["message:new", "message:read"]) {
    a.on(name, (payload) => events.push({ name, payload, early: !connected }));
  }
  await connectThenJoin(a, b, CONVERSATION_ID);

  const pid = a._pid;
  a.io.reconnection(false);
  const dropped = waitFor(a, "disconnect", "A dropped");
  a.io.engine.close();
  await dropped;
  const away = [];
  for (let i = 0; i < AWAY; i++) away.push(await send(b, `away-${i}`));
  await readOverRest(B_TOKEN);
  await readOverRest(A_TOKEN);
  events.length = 0;
  connected = false;
  a.io.reconnection(true);
  const reconnected = waitFor(a, "connect", "A reconnected");
  a.connect();
  await reconnected;
  connected = true;
  await sleep(300);
  const summary = events.map((e) => `${e.name} ${e.payload.messageId || e.payload.id}`);
  if (EXPECT === "fresh") {
    check(a.recovered === false, `${AWAY} messages + 2 receipts over the limit: a normal connect (recovered false)`);
    check(a._pid !== pid, "a new session gets a new pid");
    check(events.length === 0, "nothing is replayed, neither a message nor a receipt", summary);
  } else {
    check(a.recovered === true, `${AWAY} messages + 2 receipts at the limit: socket.recovered is true`);
    const messages = events.filter((e) => e.name === "message:new");
    const receipts = events.filter((e) => e.name === "message:read");
    check(
      events.every((e) => e.early) &&
        JSON.stringify(messages.map((e) => e.payload.id)) === JSON.stringify(away.map((m) => m.id)) &&
        receipts.length === 2 &&
        receipts.every((e) => e.payload.messageId === away[away.length - 1].id),
      `the ${AWAY} missed messages and 2 receipts are replayed before connect`,
      summary,
    );
  }
  a.close();
  b.close();
}

run(main, 30000);
