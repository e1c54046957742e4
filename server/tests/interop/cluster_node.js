// A Node socket.io node (socket.io 4.8 + @socket.io/redis-adapter 8.3) and @socket.io/redis-emitter
// sharing a Redis with chatwire nodes: broadcasts both ways and every request type from the Node
// side must cover chatwire's sockets without waiting out the adapter's 5 s request timeout.
// Env: BASE_URL (a chatwire node), REDIS_PORT, CID (a conversation of user 1:brand).
"use strict";

const path = require("path");
const http = require("http");
const { io: connect, env, ok, check, fail, waitFor, expectNone, run } = require("./common");
const mods = path.join(__dirname, "..", "..", "..", "tools", "node", "node_modules");
const { Server } = require(path.join(mods, "socket.io"));
const { createAdapter } = require(path.join(mods, "@socket.io/redis-adapter"));
const { Emitter } = require(path.join(mods, "@socket.io/redis-emitter"));
const { createClient } = require(path.join(mods, "redis"));

const BASE = env("BASE_URL");
const REDIS = `redis://127.0.0.1:${env("REDIS_PORT")}`;
const CID = Number(env("CID"));
const ROOM = `conversation:${CID}`;
const FAST_MS = 2500; // well under the adapter's 5 s requestsTimeout

async function timed(what, promise) {
  const t0 = Date.now();
  const v = await promise;
  const ms = Date.now() - t0;
  check(ms < FAST_MS, `${what} answered in ${ms} ms`, ms);
  return v;
}

run(async () => {
  const pub = createClient({ url: REDIS });
  const sub = pub.duplicate();
  const emitterClient = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect(), emitterClient.connect()]);
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter(pub, sub) });
  const nsp = io.of("/chat");
  nsp.on("connection", (s) => {
    s.join(ROOM);
    s.on("q", (arg, ack) => ack({ node: arg }));
  });
  await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
  const nodePort = httpServer.address().port;

  // A client of the Node node, in the conversation's room.
  const nodeClient = connect(`http://127.0.0.1:${nodePort}/chat`, { transports: ["websocket"] });
  await waitFor(nodeClient, "connect", "node client connects");
  nodeClient.on("q", (arg, ack) => ack({ client: arg }));

  // A client of the chatwire node, joined to the conversation.
  const cwBefore = Date.now();
  const cw = connect(`${BASE}/chat`, { transports: ["websocket"], auth: { token: "1:brand" } });
  await waitFor(cw, "connection:success", "chatwire client connects");
  cw.emit("conversation:join", { conversationId: CID });
  await waitFor(cw, "conversation:joined", "chatwire client joins the room");
  const cwId = cw.id;

  // Server count (PUBSUB NUMSUB of the request channel) includes the chatwire nodes.
  const count = await nsp.adapter.serverCount();
  check(count >= 2, "serverCount counts chatwire nodes", count);

  // Node -> chatwire broadcast to a room.
  const got = waitFor(cw, "from-node", "chatwire client gets a Node broadcast");
  nsp.to(ROOM).emit("from-node", { n: 1.5, s: "x" });
  const payload = await got;
  check(payload.n === 1.5 && payload.s === "x", "node broadcast payload intact", payload);

  // chatwire -> Node: typing:start in the room reaches the Node node's client.
  const typing = waitFor(nodeClient, "typing:start", "node client gets chatwire's typing:start");
  cw.emit("typing:start", { conversationId: CID });
  const t = await typing;
  check(t.conversationId === CID, "chatwire broadcast reaches Node clients", t);

  // chatwire -> Node: a committed message. Its broadcast's flags carry chatwirePrev (the
  // conversation's previous id, for chatwire nodes' id order), which the Node adapter passes to
  // socket.io-adapter's broadcast and otherwise ignores: watch what that broadcast is given.
  const base = Object.getPrototypeOf(Object.getPrototypeOf(nsp.adapter));
  const plain = base.broadcast;
  const flagsSeen = [];
  base.broadcast = function (packet, opts) {
    if (packet && Array.isArray(packet.data) && packet.data[0] === "message:new") flagsSeen.push(opts.flags);
    return plain.call(this, packet, opts);
  };
  const news = waitFor(nodeClient, "message:new", "node client gets chatwire's message:new");
  cw.emit("message:send", { conversationId: CID, content: "to node", tempId: "to-node-1" });
  const m = await news;
  base.broadcast = plain;
  check(m.content === "to node" && m.conversationId === CID, "chatwire message:new reaches Node clients", m);
  check(
    flagsSeen.length === 1 && Number.isInteger(flagsSeen[0] && flagsSeen[0].chatwirePrev),
    "its flags carry chatwirePrev, which the Node adapter ignores",
    flagsSeen,
  );

  // Emitter -> chatwire.
  const emitter = new Emitter(emitterClient);
  const fromEmitter = waitFor(cw, "from-emitter", "chatwire client gets an emitter broadcast");
  emitter.of("/chat").to(ROOM).emit("from-emitter", 42);
  check((await fromEmitter) === 42, "emitter broadcast reaches chatwire clients");

  // fetchSockets covers chatwire's socket, with its rooms.
  const sockets = await timed("fetchSockets", nsp.fetchSockets());
  const remote = sockets.find((s) => s.id === cwId);
  check(remote !== undefined, "fetchSockets includes the chatwire socket", sockets.map((s) => s.id));
  check(remote.rooms.has(ROOM), "fetched chatwire socket is in its conversation room", [...remote.rooms]);
  const inRoom = await timed("fetchSockets in a room", nsp.in(ROOM).fetchSockets());
  check(inRoom.length === 2, "fetchSockets in the room: node + chatwire socket", inRoom.map((s) => s.id));

  // The chatwire socket's handshake holds what Socket.IO's own server would give, minus the
  // request headers and auth (not kept; the token never goes over Redis).
  const hs = (inRoom.find((s) => s.id === cwId) || {}).handshake || {};
  const fetchedAt = Date.now();
  check(
    hs.address === "127.0.0.1" || hs.address === "::ffff:127.0.0.1",
    "fetched handshake: the client's address",
    hs,
  );
  check(
    Number.isInteger(hs.issued) && hs.issued >= cwBefore - 1000 && hs.issued <= fetchedAt,
    "fetched handshake: issued within the test's window",
    { issued: hs.issued, cwBefore, fetchedAt },
  );
  const time = Date.parse(hs.time);
  check(
    typeof hs.time === "string" && Math.abs(time - hs.issued) < 1000,
    "fetched handshake: time is the handshake's date",
    hs.time,
  );
  check(hs.query && hs.query.EIO === "4" && hs.query.transport === "websocket", "fetched handshake: query", hs.query);
  check(hs.url === "/socket.io/?EIO=4&transport=websocket", "fetched handshake: url", hs.url);
  check(hs.secure === false && hs.xdomain === false, "fetched handshake: secure and xdomain", hs);
  check(
    JSON.stringify(hs.auth) === "{}" && !JSON.stringify(hs).includes("1:brand"),
    "fetched handshake: no token",
    hs,
  );

  const rooms = await timed("allRooms", nsp.adapter.allRooms());
  check(rooms.has(ROOM), "allRooms includes chatwire's rooms", [...rooms]);

  // socketsJoin / socketsLeave act on the chatwire socket.
  nsp.in(cwId).socketsJoin("extra");
  await new Promise((r) => setTimeout(r, 300));
  const extra = waitFor(cw, "in-extra", "joined socket gets the room's broadcast");
  nsp.to("extra").emit("in-extra", 1);
  await extra;
  ok("socketsJoin joins a chatwire socket");
  nsp.in(cwId).socketsLeave("extra");
  await new Promise((r) => setTimeout(r, 300));
  nsp.to("extra").emit("in-extra", 2);
  await expectNone(cw, "in-extra", "socketsLeave removes a chatwire socket", 500);

  // serverSideEmit with and without ack.
  nsp.serverSideEmit("hello", 1);
  const answers = await timed("serverSideEmitWithAck", nsp.serverSideEmitWithAck("hello", 2));
  check(Array.isArray(answers), "serverSideEmitWithAck resolves", answers);

  // Broadcast with acks: the Node client and the chatwire client both acknowledge.
  cw.on("q", (arg, ack) => ack({ chatwire: arg }));
  const acks = await timed("timeout().emitWithAck", nsp.timeout(4000).emitWithAck("q", 7));
  check(acks.some((a) => a && a.client === 7), "Node client's ack arrives", acks);
  check(acks.some((a) => a && a.chatwire === 7), "chatwire client's ack arrives", acks);
  check(acks.length === 2, "one ack per client", acks);

  // disconnectSockets acts on the chatwire socket.
  const gone = waitFor(cw, "disconnect", "chatwire client disconnected by the Node node");
  nsp.in(cwId).disconnectSockets();
  const args = await gone;
  const reason = Array.isArray(args) ? args[0] : args;
  check(reason === "io server disconnect", "disconnectSockets disconnects a chatwire socket", reason);

  nodeClient.close();
  io.close();
  await Promise.allSettled([pub.quit(), sub.quit(), emitterClient.quit()]);
});
