// A server restart as the guide's client lives through it (the guide's connection options:
// reconnection on, 5 attempts, 1 s apart). The script sends a burst of messages with tempIds and
// prints "ok ready"; the test then shuts the server down gracefully and starts a new one on the
// same port and database. Expected: the disconnect is on the transport level ("transport close"
// after the Engine.IO close, or "transport error" when a poll races the listener closing), not a
// Socket.IO server disconnect, which would stop the client from reconnecting; the client
// reconnects by itself; re-sending every tempId (acknowledged or not, as an app that is unsure
// would) leaves each message stored exactly once.
// Env: BASE_URL, CONVERSATION_ID, A_ID, A_TYPE.
"use strict";

const { io, BASE_URL, env, check, ok, waitFor, run } = require("./common");

const BURST = 20;

run(async () => {
  const conversationId = Number(env("CONVERSATION_ID"));
  const token = `${env("A_ID")}:${env("A_TYPE")}`;
  const socket = io(`${BASE_URL}/chat`, {
    auth: { token },
    autoConnect: true,
    reconnection: true,
    reconnectionDelay: 1000,
    reconnectionAttempts: 5,
  });
  await waitFor(socket, "connection:success", "connection:success");
  const acked = new Map(); // tempId -> message id
  socket.on("message:sent", (s) => acked.set(s.tempId, s.message.id));
  const disconnected = new Promise((resolve) => socket.once("disconnect", resolve));
  for (let i = 0; i < BURST; i++) {
    socket.emit("message:send", { conversationId, content: `restart ${i}`, tempId: `s-${i}` });
  }
  ok("ready");
  const reason = await Promise.race([
    disconnected,
    new Promise((_, reject) => setTimeout(() => reject(new Error("no disconnect within 20 s")), 20000)),
  ]);
  // "transport close" is the Engine.IO close; "transport error" happens when a polling request
  // races the listener closing. Both make the client reconnect; "io server disconnect" would not.
  check(reason === "transport close" || reason === "transport error",
    `disconnect reason lets the client reconnect (${reason})`, reason);
  const before = new Map(acked);
  ok(`${before.size} of ${BURST} acknowledged before the restart`);

  await waitFor(socket, "connection:success", "connection:success after the restart", () => true, 15000);
  ok("the client reconnected by itself");
  for (let i = 0; i < BURST; i++) {
    socket.emit("message:send", { conversationId, content: `restart ${i}`, tempId: `s-${i}` });
  }
  const deadline = Date.now() + 10000;
  while (acked.size < BURST || [...before.keys()].some((k) => acked.get(k) !== before.get(k))) {
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  check(acked.size === BURST, `all ${BURST} tempIds acknowledged after the retry`, acked.size);
  check([...before].every(([k, id]) => acked.get(k) === id),
    "messages acknowledged before the restart keep their ids on retry");

  const res = await fetch(`${BASE_URL}/api/chat/conversations/${conversationId}/messages?limit=100`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  const { messages } = await res.json();
  const contents = messages.map((m) => m.content).sort();
  const expected = Array.from({ length: BURST }, (_, i) => `restart ${i}`).sort();
  check(JSON.stringify(contents) === JSON.stringify(expected),
    `history holds each of the ${BURST} messages exactly once`, contents);
  socket.close();
});
