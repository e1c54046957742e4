// The real socket.io-client through a round-robin front over several chatwire nodes (no sticky
// sessions): one client on polling only, whose every request lands on the next node, and
// clients with the default transports (polling, then the upgrade, which lands on whichever node
// is next). Each must connect, get answers to its events, survive several heartbeats and
// upgrade; none may be disconnected. UPGRADING_CLIENTS (default 3) sets how many upgrade.
"use strict";

const { io, BASE_URL, fail, ok, check, waitFor, run } = require("./common");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function neverDisconnects(socket, who) {
  socket.on("disconnect", (reason) => fail(`${who} disconnected: ${reason}`));
  socket.on("connect_error", (e) => fail(`${who} connect_error: ${e && e.message}`));
}

async function roundTrips(socket, userId, n, who) {
  for (let i = 0; i < n; i++) {
    socket.emit("user:check:online", { userId, userType: "brand" });
    const status = await waitFor(socket, "user:online:status", `${who}: answer ${i + 1}`,
      (p) => p && p.userId === userId);
    if (status.isOnline !== true) fail(`${who}: user ${userId} not online: ${JSON.stringify(status)}`);
  }
  ok(`${who}: ${n} events answered`);
}

run(async () => {
  const polling = io(`${BASE_URL}/chat`, {
    auth: { token: "21:brand" },
    transports: ["polling"],
    reconnection: false,
  });
  neverDisconnects(polling, "polling client");
  await waitFor(polling, "connection:success", "polling client connected");
  ok("polling client connected");
  await roundTrips(polling, 21, 6, "polling client");
  // Several heartbeats (the test sets a short ping interval): pings and pongs cross nodes too.
  await sleep(1500);
  await roundTrips(polling, 21, 2, "polling client after heartbeats");
  check(polling.io.engine.transport.name === "polling", "polling client stayed on polling");

  const count = Number(process.env.UPGRADING_CLIENTS || 3);
  for (let c = 0; c < count; c++) {
    const userId = 30 + c;
    const who = `upgrading client ${c + 1}`;
    const socket = io(`${BASE_URL}/chat`, { auth: { token: `${userId}:brand` }, reconnection: false });
    neverDisconnects(socket, who);
    await waitFor(socket, "connection:success", `${who} connected`);
    if (socket.io.engine.transport.name !== "websocket") {
      await waitFor(socket.io.engine, "upgrade", `${who} upgraded`);
    }
    check(socket.io.engine.transport.name === "websocket", `${who} upgraded to websocket`);
    await roundTrips(socket, userId, 4, who);
    await sleep(800);
    await roundTrips(socket, userId, 1, `${who} after heartbeats`);
    socket.off("disconnect");
    socket.close();
  }
  polling.off("disconnect");
  polling.close();
}, 60000);
