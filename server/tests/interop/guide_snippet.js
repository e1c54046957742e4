// The guide's "Testing WebSocket Connection / Using Browser Console" snippet, verbatim except for
// the URL, run against chatwire, with a second user (brand 2) in room `conversation:1` who must
// receive the snippet's message. Needs conversation 1 between influencer 1 and brand 2.
"use strict";

const { io, BASE_URL, check, waitFor, run } = require("./common");

run(async () => {
  // The other participant, already in the room.
  const peer = io(`${BASE_URL}/chat`, { auth: { token: "2:brand" } });
  await waitFor(peer, "connection:success", "peer connection:success");
  peer.emit("conversation:join", { conversationId: 1 });
  await waitFor(peer, "conversation:joined", "peer conversation:joined");
  const delivered = waitFor(peer, "message:new", "message:new at the peer");

  // Capture what the snippet logs.
  const logged = [];
  const log = console.log;
  console.log = (...args) => {
    logged.push(args);
    log(`# ${args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ")}`);
  };
  const connected = new Promise((resolve) => {
    const poll = setInterval(() => {
      const line = logged.find((args) => args[0] === "Connected:");
      if (line) {
        clearInterval(poll);
        resolve(line[1]);
      }
    }, 10);
  });

  // ---- the guide's snippet (URL changed) ----
  const socket = io(`${BASE_URL}/chat`, {
    auth: { token: '1:influencer' }
  });

  socket.on('connection:success', (data) => console.log('Connected:', data));
  socket.emit('conversation:join', { conversationId: 1 });
  socket.emit('message:send', { conversationId: 1, content: 'Test message' });
  socket.on('message:new', (msg) => console.log('New message:', msg));
  // ---- end of snippet ----

  const data = await connected;
  console.log = log;
  check(
    data.userId === 1 && data.userType === "influencer" && data.socketId === socket.id,
    "connection:success carries {userId: 1, userType: 'influencer', socketId: socket.id}",
    { data, id: socket.id },
  );
  const msg = await delivered;
  check(
    msg.content === "Test message" && msg.conversationId === 1 && msg.senderType === "influencer" &&
      msg.sender && msg.sender.id === 1 && msg.messageType === "text" && Number.isInteger(msg.id) &&
      msg.isRead === false && typeof msg.createdAt === "string",
    "the peer got message:new with the snippet's message",
    msg,
  );
  await new Promise((r) => setTimeout(r, 300));
  check(
    !logged.some((args) => args[0] === "New message:"),
    "the sending socket did not get its own message:new",
  );
  socket.disconnect();
  peer.disconnect();
});
