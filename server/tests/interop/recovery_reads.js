// Connection state recovery of read receipts with the unmodified socket.io-client: A (influencer)
// is in the room and gets B's (brand) live `message:read`; A drops its transport; meanwhile B
// reads further over its socket and then over REST, and A's other device reads over REST. When
// A recovers (to RECONNECT_URL) it must have, before "connect", exactly one `message:read` per
// reader with that reader's newest pointer, and none it already had (B's live receipt). A second
// drop after A read over its own socket and got B's live receipt, with nothing read meanwhile,
// replays no receipt at all (neither A's own read, nor the live receipt, nor round 1's replays),
// and a read after the recovery arrives live once.
//
// Environment: A_URL, B_URL, RECONNECT_URL, CONVERSATION_ID, A_TOKEN, B_TOKEN,
//   B_AWAY_URL (where B reconnects once A dropped, default B_URL: B's node may be the one killed),
//   KILL ("1": instead of closing its transport, A prints "ok kill the node now" and waits for
//   its node to die).
"use strict";

const { env, ok, check, waitFor, restRead, run, chatSocket, connectThenJoin, sleep, until } = require("./common");

const A_URL = env("A_URL");
const B_URL = env("B_URL");
const B_AWAY_URL = process.env.B_AWAY_URL || B_URL;
const RECONNECT_URL = env("RECONNECT_URL");
const CONVERSATION_ID = Number(env("CONVERSATION_ID"));
const A_TOKEN = env("A_TOKEN");
const B_TOKEN = env("B_TOKEN");
const KILL = process.env.KILL === "1";


async function send(b, content) {
  const tempId = `t-${content}`;
  const sent = waitFor(b, "message:sent", `message:sent for ${content}`, (p) => p.tempId === tempId);
  b.emit("message:send", { conversationId: CONVERSATION_ID, content, tempId });
  return (await sent).message;
}

// A socket read: waits for its reply.
async function readOverSocket(s, messageId, what) {
  const done = waitFor(s, "message:read:success", what);
  s.emit("message:read", messageId ? { conversationId: CONVERSATION_ID, messageId } : { conversationId: CONVERSATION_ID });
  return (await done).messageId;
}

// A REST read (PUT /api/chat/conversations/:id/read), up to the newest message.
const readOverRest = (baseUrl, token) => restRead(baseUrl, token, CONVERSATION_ID);

const who = (r) => `${r.readBy.userType}:${r.readBy.userId}`;

async function main() {
  const a = chatSocket(A_URL, A_TOKEN, true);
  let b = chatSocket(B_URL, B_TOKEN);
  // Every message:read A gets: [payload, offset, got before "connect" of the current round].
  const receipts = [];
  let connected = true;
  a.on("message:read", (...args) => receipts.push({ payload: args[0], args, early: !connected }));
  await connectThenJoin(a, b, CONVERSATION_ID);
  if (KILL) await sleep(300); // the room change reaches the session row

  // Live: B sends m1; A reads it itself (its own reply, no receipt); B reads it (a receipt).
  const m1 = await send(b, "m1");
  check((await readOverSocket(a, m1.id, "A read m1")) === m1.id, "A reads m1 over its socket");
  check((await readOverSocket(b, m1.id, "B read m1")) === m1.id, "B reads m1 over its socket");
  await until(() => receipts.length === 1, "A got B's live message:read for m1");
  const live = receipts[0];
  check(
    live.payload.messageId === m1.id && who(live.payload) === "brand:2" && live.args.length === 2 && typeof live.args[1] === "string",
    "the live message:read carries the offset as its last argument",
    live.args,
  );

  // Round 1: A drops; B reads m2 over its socket, then m3 (the newest) over REST; A's other
  // device reads everything over REST.
  receipts.length = 0;
  const pid = a._pid;
  a.io.reconnection(false);
  let dropped = waitFor(a, "disconnect", "A dropped (round 1)");
  if (KILL) ok("kill the node now");
  else a.io.engine.close();
  await dropped;
  if (B_AWAY_URL !== B_URL) {
    b.close();
    b = chatSocket(B_AWAY_URL, B_TOKEN);
    await waitFor(b, "connection:success", "B connected to B_AWAY_URL");
  }
  const m2 = await send(b, "m2");
  const m3 = await send(b, "m3");
  check((await readOverSocket(b, m2.id, "B read m2")) === m2.id, "B reads m2 over its socket while A is away");
  check((await readOverRest(B_AWAY_URL, B_TOKEN)) === m3.id, "B reads the newest (m3) over REST while A is away");
  check((await readOverRest(B_AWAY_URL, A_TOKEN)) === m3.id, "A's other device reads m3 over REST while A is away");
  connected = false;
  a.io.uri = RECONNECT_URL;
  a.io.reconnection(true);
  let reconnected = waitFor(a, "connect", "A reconnected (round 1)");
  a.connect();
  await reconnected;
  connected = true;
  check(a.recovered === true, "socket.recovered is true after round 1");
  check(a._pid === pid, "the pid is kept");
  await sleep(300);
  const round1 = receipts.map((r) => ({ by: who(r.payload), messageId: r.payload.messageId, early: r.early }));
  round1.sort((x, y) => x.by.localeCompare(y.by));
  check(
    JSON.stringify(round1) ===
      JSON.stringify([
        { by: "brand:2", messageId: m3.id, early: true },
        { by: "influencer:1", messageId: m3.id, early: true },
      ]),
    "exactly one message:read per reader, with its newest messageId, before connect (round 1)",
    { round1, m1: m1.id, m2: m2.id, m3: m3.id },
  );
  check(
    receipts.every((r) => r.payload.conversationId === CONVERSATION_ID && r.args.length === 2 && typeof r.args[1] === "string"),
    "replayed message:read payloads have the live shape and carry offsets",
    receipts.map((r) => r.args),
  );

  // Round 2: A reads m4 over its own socket and gets B's live receipt for m4, drops, and nobody
  // reads while it is away: neither its own read, nor the live receipt, nor the receipts
  // replayed in round 1 are sent again.
  receipts.length = 0;
  const m4 = await send(b, "m4");
  check((await readOverSocket(a, m4.id, "A read m4")) === m4.id, "A reads m4 over its socket after recovering");
  await readOverSocket(b, m4.id, "B read m4");
  await until(() => receipts.length === 1, "A got B's live message:read for m4");
  receipts.length = 0;
  a.io.reconnection(false);
  dropped = waitFor(a, "disconnect", "A dropped (round 2)");
  a.io.engine.close();
  await dropped;
  await send(b, "m5");
  connected = false;
  a.io.reconnection(true);
  reconnected = waitFor(a, "connect", "A reconnected (round 2)");
  a.connect();
  await reconnected;
  connected = true;
  check(a.recovered === true, "socket.recovered is true after round 2");
  await sleep(300);
  check(receipts.length === 0, "no message:read is replayed when nothing was read while away (round 2)",
    receipts.map((r) => r.payload));

  // After the recovery a read arrives live, once.
  const m6 = await send(b, "m6");
  await readOverSocket(b, m6.id, "B read m6");
  await until(() => receipts.length >= 1, "A got B's live message:read for m6");
  await sleep(300);
  check(
    receipts.length === 1 && receipts[0].payload.messageId === m6.id && !receipts[0].early,
    "a read after the recovery arrives live once",
    receipts.map((r) => r.payload),
  );
  a.close();
  b.close();
}

run(main, 60000);
