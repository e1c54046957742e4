// Acknowledgements and refusals as a socket.io-client app sees them:
// - every request event with a reply also answers the ack callback with the same payload
//   (`socket.emit('message:send', payload, (res) => ...)`), and the reply event still arrives;
// - a bad payload gets its error reply through the ack as well;
// - a bad or missing token is a `connect_error` whose message says why, and the client stays
//   disconnected; the main namespace `/` needs no token.
// Env: BASE_URL, CONVERSATION_ID, A_ID, A_TYPE (a participant).
"use strict";

const { io, BASE_URL, env, check, waitFor, run } = require("./common");

function emitAck(socket, event, payload, what, ms = 5000) {
  return new Promise((resolve, reject) => {
    socket.timeout(ms).emit(event, payload, (err, res) => {
      if (err) reject(new Error(`no ack for ${what} within ${ms} ms`));
      else resolve(res);
    });
  });
}

run(async () => {
  const conversationId = Number(env("CONVERSATION_ID"));
  const token = `${env("A_ID")}:${env("A_TYPE")}`;
  const socket = io(`${BASE_URL}/chat`, { auth: { token } });
  await waitFor(socket, "connection:success", "connection:success");

  const joinedEvent = waitFor(socket, "conversation:joined", "conversation:joined event");
  const joined = await emitAck(socket, "conversation:join", { conversationId: String(conversationId) }, "conversation:join");
  check(joined.conversationId === conversationId && joined.room === `conversation:${conversationId}`,
    "conversation:join ack {conversationId, room} (numeric-string id accepted)", joined);
  check(JSON.stringify(await joinedEvent) === JSON.stringify(joined), "conversation:joined event equals the ack");

  // The guide's callback form.
  const sentEvent = waitFor(socket, "message:sent", "message:sent event", (s) => s.tempId === 41);
  const res = await new Promise((resolve) => {
    socket.emit("message:send", { conversationId, content: "with an ack", tempId: 41 }, (r) => resolve(r));
  });
  check(res.tempId === 41 && res.message && res.message.content === "with an ack" && Number.isInteger(res.message.id),
    "message:send ack {tempId, message}", res);
  const ev = await sentEvent;
  check(ev.message.id === res.message.id, "message:sent event still emitted with the same message");

  // tempId keeps its JSON type: "41" is another key than 41, and a repeat of 41 is idempotent.
  const asString = await emitAck(socket, "message:send", { conversationId, content: "string key", tempId: "41" }, "send tempId '41'");
  check(asString.tempId === "41" && asString.message.id !== res.message.id,
    "tempId '41' (string) is a different key than 41", asString);
  const again = await emitAck(socket, "message:send", { conversationId, content: "with an ack", tempId: 41 }, "repeat send");
  check(again.tempId === 41 && again.message.id === res.message.id,
    "repeated (sender, conversation, tempId) answers the first stored message", again);

  // Errors come through the ack too.
  const errEvent = waitFor(socket, "message:error", "message:error event");
  const bad = await emitAck(socket, "message:send", { conversationId, content: "   ", tempId: "x1" }, "blank send");
  check(bad.error === "bad_request" && bad.tempId === "x1" && typeof bad.message === "string",
    "blank content: ack {error: 'bad_request', tempId}", bad);
  check((await errEvent).error === "bad_request", "message:error event still emitted");
  const none = await emitAck(socket, "message:send", { conversationId: 999999, content: "nowhere" }, "unknown conversation");
  check(none.error === "not_found" && none.tempId === null, "unknown conversation: {error: 'not_found', tempId: null}", none);
  const readOk = await emitAck(socket, "message:read", { conversationId }, "message:read");
  check(readOk.conversationId === conversationId && Number.isInteger(readOk.messageId) && readOk.messageId >= res.message.id,
    "message:read without messageId acks the newest id (never null)", readOk);
  const status = await emitAck(socket, "user:check:online", { userId: Number(env("A_ID")), userType: env("A_TYPE") }, "user:check:online");
  check(status.isOnline === true, "user:check:online ack says a connected user is online", status);
  socket.disconnect();

  // Refused namespace connections.
  for (const [label, opts, expected] of [
    ["no token", {}, "unauthorized"],
    ["garbage token", { auth: { token: "garbage" } }, "unauthorized"],
    ["unknown user type", { auth: { token: "5:admin" } }, "invalid user type"],
    ["bad user id", { auth: { token: "0:brand" } }, "invalid user id"],
  ]) {
    // The guide's connection options: reconnection on, 5 attempts.
    const s = io(`${BASE_URL}/chat`, { ...opts, reconnection: true, reconnectionDelay: 1000, reconnectionAttempts: 5 });
    const err = await waitFor(s, "connect_error", `connect_error for ${label}`);
    check(err instanceof Error && err.message === expected && !s.connected,
      `${label}: connect_error "${expected}"`, { message: err && err.message });
    await new Promise((r) => setTimeout(r, 100));
    check(!s.active && !s.connected, `${label}: the client gives up (no reconnection loop)`);
    s.close();
  }

  // Main namespace: no token needed.
  const main = io(BASE_URL, { reconnection: false });
  await waitFor(main, "connect", "connect on '/'");
  check(main.connected && typeof main.id === "string", "main namespace '/' accepts a client without a token");
  main.disconnect();
});
