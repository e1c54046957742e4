// Benchmark peer on Node's socket.io: the load scenario's part of the chat contract, in memory.
//
// Namespace `/chat`, dev tokens `auth.token = "<userId>:<userType>"`, events `conversation:join`,
// `message:send`, `typing:start` / `typing:stop`, `message:read`, with the contract's payloads.
// No participant checks and no storage: `scripts/bench.sh` puts the same load on chatwire and on
// this server to compare CPU per delivery and memory per connection.
//
// Usage: node server.js [--port N]   (or PORT; default 3002)
"use strict";

const http = require("http");
const { Server } = require("socket.io");

function port() {
  const i = process.argv.indexOf("--port");
  if (i > 0 && process.argv[i + 1]) return Number(process.argv[i + 1]);
  return Number(process.env.PORT || 3002);
}

function identity(token) {
  if (typeof token !== "string") return null;
  const m = /^(?:Bearer )?([1-9][0-9]*):(brand|influencer)$/.exec(token);
  return m ? { id: Number(m[1]), type: m[2] } : null;
}

function conversationId(v) {
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (typeof v === "string" && /^[0-9]+$/.test(v)) return Number(v);
  return null;
}

let nextMessageId = 1;

const server = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200);
    res.end("ok");
  }
});
const io = new Server(server, { cors: { origin: true } });
io.of("/").on("connection", () => {});
const chat = io.of("/chat");

chat.use((socket, next) => {
  const me = identity(socket.handshake.auth && socket.handshake.auth.token);
  if (!me) return next(new Error("unauthorized"));
  socket.data.me = me;
  next();
});

chat.on("connection", (socket) => {
  const me = socket.data.me;
  const reply = (event, payload, ack) => {
    socket.emit(event, payload);
    if (typeof ack === "function") ack(payload);
  };
  socket.emit("connection:success", { userId: me.id, userType: me.type, socketId: socket.id });

  socket.on("conversation:join", (p, ack) => {
    const id = conversationId(p && p.conversationId);
    if (id === null) {
      return reply("conversation:error", { conversationId: null, error: "bad_request", message: "conversationId" }, ack);
    }
    const room = `conversation:${id}`;
    socket.join(room);
    reply("conversation:joined", { conversationId: id, room }, ack);
  });

  socket.on("message:send", (p, ack) => {
    const cid = conversationId(p && p.conversationId);
    const tempId = p && p.tempId !== undefined ? p.tempId : null;
    if (cid === null || typeof p.content !== "string" || p.content.trim() === "") {
      return reply("message:error", { error: "bad_request", message: "invalid message", tempId }, ack);
    }
    const message = {
      id: nextMessageId++,
      conversationId: cid,
      sender: { id: me.id, username: `${me.type}_${me.id}`, firstName: null, lastName: null, profileImage: null },
      senderType: me.type,
      messageType: "text",
      content: p.content,
      isRead: false,
      createdAt: new Date().toISOString(),
      attachmentUrl: null,
      attachmentName: null,
    };
    reply("message:sent", { tempId, message }, ack);
    socket.to(`conversation:${cid}`).emit("message:new", message);
  });

  for (const event of ["typing:start", "typing:stop"]) {
    socket.on(event, (p) => {
      const cid = conversationId(p && p.conversationId);
      if (cid === null) return;
      socket.to(`conversation:${cid}`).emit(event, { conversationId: cid, user: { userId: me.id, userType: me.type } });
    });
  }

  socket.on("message:read", (p, ack) => {
    const cid = conversationId(p && p.conversationId);
    if (cid === null) {
      return reply("conversation:error", { conversationId: null, error: "bad_request", message: "conversationId" }, ack);
    }
    const messageId = p.messageId != null ? p.messageId : nextMessageId - 1;
    reply("message:read:success", { conversationId: cid, messageId }, ack);
    socket.to(`conversation:${cid}`).emit("message:read", {
      conversationId: cid,
      messageId,
      readBy: { userId: me.id, userType: me.type },
    });
  });
});

server.listen(port(), "127.0.0.1", () => {
  console.error(`node socket.io peer listening on 127.0.0.1:${server.address().port}`);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
