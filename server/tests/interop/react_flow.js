// The guide's "Complete Frontend Example (React)" event flow, run for two users in one
// conversation. `ChatComponent` below is the component's effect and handlers with React state
// replaced by plain fields (same emits, same listeners, same options), so what the guide's app
// does on the wire is exactly what is checked here.
//
// Usage: node react_flow.js default|websocket
//   default:   the client's default transports (HTTP long-polling, then upgrade to WebSocket)
//   websocket: `transports: ['websocket']`
// Env: BASE_URL, CONVERSATION_ID, A_ID, A_TYPE, B_ID, B_TYPE (A and B participants).
"use strict";

const { io, BASE_URL, env, check, ok, fail, waitFor, expectNone, run } = require("./common");

const mode = process.argv[2] || "default";
if (!["default", "websocket"].includes(mode)) fail(`unknown mode ${mode}`);
const extraOptions = mode === "websocket" ? { transports: ["websocket"] } : {};

// JSON text with object keys sorted, to compare two payloads as values.
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

class ChatComponent {
  constructor({ userId, userType, conversationId }) {
    this.props = { userId, userType, conversationId };
    this.messages = [];
    this.isTyping = false;
    this.typingTimeout = null;
    // useEffect body
    this.socket = io(`${BASE_URL}/chat`, {
      auth: {
        token: `${userId}:${userType}`, // Replace with actual JWT in production
      },
      ...extraOptions,
    });
    const socket = this.socket;
    socket.on("connection:success", (data) => {
      // Join the conversation room
      socket.emit("conversation:join", { conversationId });
    });
    socket.on("message:new", (message) => {
      this.messages = [...this.messages, message];
    });
    socket.on("typing:start", (data) => {
      if (data.user.userId !== userId) this.isTyping = true;
    });
    socket.on("typing:stop", (data) => {
      if (data.user.userId !== userId) this.isTyping = false;
    });
    socket.on("message:read", (data) => {
      this.messages = this.messages.map((msg) =>
        msg.id <= data.messageId ? { ...msg, isRead: true, readAt: new Date() } : msg,
      );
    });
  }

  // useEffect cleanup
  unmount() {
    clearTimeout(this.typingTimeout);
    this.socket.emit("conversation:leave", { conversationId: this.props.conversationId });
    this.socket.disconnect();
  }

  handleSendMessage(newMessage) {
    if (!newMessage.trim()) return null;
    const { userType, conversationId } = this.props;
    const tempId = Date.now();
    this.messages = [
      ...this.messages,
      { id: tempId, content: newMessage, senderType: userType, createdAt: new Date(), isRead: false, isSending: true },
    ];
    this.socket.emit("message:send", { conversationId, content: newMessage, messageType: "text", tempId });
    this.socket.emit("typing:stop", { conversationId });
    return tempId;
  }

  handleTyping() {
    const { conversationId } = this.props;
    this.socket.emit("typing:start", { conversationId });
    if (this.typingTimeout) clearTimeout(this.typingTimeout);
    this.typingTimeout = setTimeout(() => {
      this.socket.emit("typing:stop", { conversationId });
    }, 2000);
  }

  handleMarkAsRead(messageId) {
    this.socket.emit("message:read", { conversationId: this.props.conversationId, messageId });
  }
}

run(async () => {
  const conversationId = Number(env("CONVERSATION_ID"));
  const a = { userId: Number(env("A_ID")), userType: env("A_TYPE"), conversationId };
  const b = { userId: Number(env("B_ID")), userType: env("B_TYPE"), conversationId };
  const room = `conversation:${conversationId}`;

  const A = new ChatComponent(a);
  const B = new ChatComponent(b);
  const joinedA = waitFor(A.socket, "conversation:joined", "A conversation:joined");
  const joinedB = waitFor(B.socket, "conversation:joined", "B conversation:joined");
  const successA = await waitFor(A.socket, "connection:success", "A connection:success");
  check(successA.userId === a.userId && successA.userType === a.userType && successA.socketId === A.socket.id,
    "connection:success {userId, userType, socketId} for A", successA);
  const [jA, jB] = await Promise.all([joinedA, joinedB]);
  check(jA.conversationId === conversationId && jA.room === room && jB.room === room,
    "both joined on connection:success", { jA, jB });

  // Transport: polling first, then upgrade (default) or WebSocket from the start.
  for (const [name, C] of [["A", A], ["B", B]]) {
    const engine = C.socket.io.engine;
    if (mode === "websocket") {
      check(engine.transport.name === "websocket", `${name} uses websocket only`, engine.transport.name);
    } else {
      if (engine.transport.name !== "websocket") {
        await waitFor(engine, "upgrade", `${name} upgrade to websocket`);
      }
      check(engine.transport.name === "websocket", `${name} upgraded from polling to websocket`);
    }
  }

  // Typing: A types, B's indicator goes on; A's own indicator stays off.
  const typingOn = waitFor(B.socket, "typing:start", "typing:start at B");
  A.handleTyping();
  const t = await typingOn;
  check(t.conversationId === conversationId && t.user.userId === a.userId && t.user.userType === a.userType && B.isTyping,
    "B sees A typing", t);
  check(!A.isTyping, "A does not see its own typing");

  // Send with tempId: message:sent to A with that tempId, message:new to B, typing stops.
  const sentP = waitFor(A.socket, "message:sent", "message:sent at A");
  const newP = waitFor(B.socket, "message:new", "message:new at B");
  const stopP = waitFor(B.socket, "typing:stop", "typing:stop at B");
  const tempId = A.handleSendMessage("Hello from the guide's component!");
  const sent = await sentP;
  check(sent.tempId === tempId && sent.message && sent.message.content === "Hello from the guide's component!",
    "message:sent carries the numeric tempId and the stored message", sent);
  const received = await newP;
  check(canonical(received) === canonical(sent.message),
    "message:new at B is the same object as message:sent.message", { received, sent: sent.message });
  check(received.sender.id === a.userId && received.senderType === a.userType && received.conversationId === conversationId,
    "message:new names the sender and conversation", received);
  await stopP;
  check(!B.isTyping, "B's typing indicator is off after the send");
  check(B.messages.length === 1 && B.messages[0].id === received.id, "B's list holds the message", B.messages);

  // B answers; A receives it.
  const backP = waitFor(A.socket, "message:new", "message:new at A");
  const sentBP = waitFor(B.socket, "message:sent", "message:sent at B");
  const tempB = B.handleSendMessage("Hi A");
  const back = await backP;
  check(back.content === "Hi A" && back.sender.id === b.userId && back.id > received.id,
    "A receives B's reply with a larger id", back);
  const sentB = await sentBP;
  check(sentB.tempId === tempB, "B's message:sent carries B's tempId", sentB);
  check(sentB.message.id === back.id, "B's message:sent matches A's message:new");

  // Read receipts: B reads A's message; A's list marks it read.
  const readP = waitFor(A.socket, "message:read", "message:read at A");
  const readOkP = waitFor(B.socket, "message:read:success", "message:read:success at B");
  B.handleMarkAsRead(received.id);
  const read = await readP;
  check(read.conversationId === conversationId && read.messageId === received.id &&
      read.readBy.userId === b.userId && read.readBy.userType === b.userType,
    "A gets message:read {conversationId, messageId, readBy}", read);
  const readOk = await readOkP;
  check(readOk.conversationId === conversationId && readOk.messageId === received.id,
    "B gets message:read:success", readOk);
  check(A.messages.find((m) => m.id === back.id) !== undefined, "A's list holds B's reply");
  await expectNone(B.socket, "message:read", "the reader does not get its own message:read");

  // Unmount both (leave + disconnect).
  const leftP = waitFor(A.socket, "conversation:left", "A conversation:left");
  A.socket.emit("conversation:leave", { conversationId });
  const left = await leftP;
  check(left.conversationId === conversationId && left.room === room, "conversation:left {conversationId, room}", left);
  A.unmount();
  B.unmount();
  ok(`flow complete over ${mode}`);
});
