// What else a socket.io-client app relies on, each with the real client:
// - multiplexing: `/` and `/chat` on one Manager (one Engine.IO connection);
// - presence: `user:online` when the other participant connects, `user:offline` when it leaves;
// - `message:notification` to a participant who is online but not in the room;
// - a message sent over REST (`POST /api/chat/messages`) arrives live as `message:new`;
// - exactly once: after the transport drops and the client reconnects, re-sending the same
//   tempId answers the first stored message and the other side gets no second `message:new`;
// - a page from a refused Origin cannot connect (polling and WebSocket both get 403).
// Env: BASE_URL, CONVERSATION_ID, A_ID, A_TYPE, B_ID, B_TYPE.
"use strict";

const { io, Manager, BASE_URL, env, check, waitFor, expectNone, run } = require("./common");

run(async () => {
  const conversationId = Number(env("CONVERSATION_ID"));
  const a = { id: Number(env("A_ID")), type: env("A_TYPE") };
  const b = { id: Number(env("B_ID")), type: env("B_TYPE") };
  const tokenA = `${a.id}:${a.type}`;
  const tokenB = `${b.id}:${b.type}`;

  // Multiplexing: one Manager, two namespaces, one Engine.IO session.
  const manager = new Manager(BASE_URL, { transports: ["websocket"] });
  const main = manager.socket("/");
  const A = manager.socket("/chat", { auth: { token: tokenA } });
  await Promise.all([waitFor(main, "connect", "connect on /"), waitFor(A, "connection:success", "A connection:success")]);
  check(main.connected && A.connected && main.io === A.io && manager.engine.id,
    "'/' and '/chat' multiplexed on one connection", { engine: manager.engine.id });

  // Presence: B comes online, A hears it.
  const onlineP = waitFor(A, "user:online", "user:online at A", (p) => p.userId === b.id);
  const B = io(`${BASE_URL}/chat`, { auth: { token: tokenB } });
  await waitFor(B, "connection:success", "B connection:success");
  const online = await onlineP;
  check(online.userId === b.id && online.userType === b.type, "A gets user:online {userId, userType} for B", online);

  // Notification: B is online but not in the room.
  const joined = await A.timeout(5000).emitWithAck("conversation:join", { conversationId });
  check(joined.room === `conversation:${conversationId}`, "A joined the room");
  const noteP = waitFor(B, "message:notification", "message:notification at B");
  const sent = await A.timeout(5000).emitWithAck("message:send", { conversationId, content: "ping B", tempId: "n-1" });
  const note = await noteP;
  check(note.conversationId === conversationId && note.message && note.message.id === sent.message.id,
    "B (online, not in the room) gets message:notification {conversationId, message}", note);
  await expectNone(A, "message:notification", "the sender's own user gets no notification");

  // REST send, delivered live to B in the room.
  await B.timeout(5000).emitWithAck("conversation:join", { conversationId });
  const liveP = waitFor(B, "message:new", "message:new at B for the REST send", (m) => m.content === "over REST");
  const res = await fetch(`${BASE_URL}/api/chat/messages`, {
    method: "POST",
    headers: { Authorization: `Bearer ${tokenA}`, "Content-Type": "application/json" },
    body: JSON.stringify({ conversationId, content: "over REST", tempId: "rest-1" }),
  });
  const body = await res.json();
  check(res.status === 201 && body.content === "over REST", "POST /api/chat/messages answers 201 with the message", { status: res.status, body });
  const live = await liveP;
  check(live.id === body.id, "the REST message arrives live as message:new with the same id", live);

  // Exactly once across a reconnect.
  const firstNewP = waitFor(B, "message:new", "first message:new for tempId r-1", (m) => m.content === "retry me");
  const first = await A.timeout(5000).emitWithAck("message:send", { conversationId, content: "retry me", tempId: "r-1" });
  await firstNewP;
  const reconnected = waitFor(A, "connection:success", "A connection:success after reconnect");
  manager.engine.close(); // the transport drops; the client reconnects by itself
  await reconnected;
  await A.timeout(5000).emitWithAck("conversation:join", { conversationId });
  const dupNone = expectNone(B, "message:new", "no second message:new after the retry", 700);
  const retry = await A.timeout(5000).emitWithAck("message:send", { conversationId, content: "retry me", tempId: "r-1" });
  check(retry.tempId === "r-1" && retry.message.id === first.message.id,
    "the retried tempId answers the first stored message", { first: first.message.id, retry: retry.message.id });
  await dupNone;

  // Offline: B leaves entirely.
  const offlineP = waitFor(A, "user:offline", "user:offline at A", (p) => p.userId === b.id);
  B.disconnect();
  const offline = await offlineP;
  check(offline.userType === b.type, "A gets user:offline when B's last socket is gone", offline);

  // Token from the handshake's Authorization header (no auth.token), on both transports.
  for (const transports of [["polling"], ["websocket"]]) {
    const h = io(`${BASE_URL}/chat`, {
      transports, extraHeaders: { Authorization: `Bearer ${tokenB}` }, reconnection: false,
    });
    const hello = await waitFor(h, "connection:success", `connection:success via Authorization over ${transports[0]}`);
    check(hello.userId === b.id && hello.userType === b.type,
      `the handshake Authorization header authenticates over ${transports[0]}`, hello);
    h.close();
  }
  // auth.token wins over the header.
  const both = io(`${BASE_URL}/chat`, {
    auth: { token: tokenA }, transports: ["websocket"], extraHeaders: { Authorization: `Bearer ${tokenB}` }, reconnection: false,
  });
  const winner = await waitFor(both, "connection:success", "connection:success with both token sources");
  check(winner.userId === a.id, "auth.token wins over the Authorization header", winner);
  both.close();

  // A refused Origin (cross-site page) cannot connect on either transport.
  for (const transports of [["polling"], ["websocket"]]) {
    const evil = io(`${BASE_URL}/chat`, {
      auth: { token: tokenA },
      transports,
      extraHeaders: { Origin: "https://evil.example" },
      reconnection: false,
    });
    const err = await waitFor(evil, "connect_error", `connect_error for a refused Origin over ${transports[0]}`);
    check(!evil.connected, `refused Origin over ${transports[0]}: connect_error (${err.message})`);
    evil.close();
  }
  // Same-origin and localhost pages are fine.
  const local = io(`${BASE_URL}/chat`, {
    auth: { token: tokenA }, transports: ["polling"], extraHeaders: { Origin: "http://localhost:5173" }, reconnection: false,
  });
  await waitFor(local, "connection:success", "connection:success from a localhost Origin");
  check(local.connected, "a localhost Origin may connect over polling");
  local.close();
  main.disconnect();
  A.disconnect();
});
