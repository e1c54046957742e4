// The guide's production setup: `auth: { token: \`Bearer ${token}\` }` with a real JWT, on a
// server configured with JWT_SECRET (dev tokens therefore off).
// Env: BASE_URL, CONVERSATION_ID, TOKEN_A, TOKEN_B (valid JWTs; A has profile claims),
// A_ID, A_TYPE, A_USERNAME, TOKEN_EXPIRED.
"use strict";

const { io, BASE_URL, env, check, waitFor, run } = require("./common");

run(async () => {
  const conversationId = Number(env("CONVERSATION_ID"));
  const A = io(`${BASE_URL}/chat`, { auth: { token: `Bearer ${env("TOKEN_A")}` } });
  const B = io(`${BASE_URL}/chat`, { auth: { token: env("TOKEN_B") } }); // bare JWT
  const [helloA] = await Promise.all([
    waitFor(A, "connection:success", "A connection:success"),
    waitFor(B, "connection:success", "B connection:success"),
  ]);
  check(helloA.userId === Number(env("A_ID")) && helloA.userType === env("A_TYPE"),
    "a Bearer JWT identifies the user from its claims", helloA);
  await B.timeout(5000).emitWithAck("conversation:join", { conversationId });
  const newP = waitFor(B, "message:new", "message:new at B");
  await A.timeout(5000).emitWithAck("message:send", { conversationId, content: "signed" });
  const msg = await newP;
  check(msg.sender.username === env("A_USERNAME") && msg.sender.firstName === "Ada",
    "the JWT's profile claims appear as the message sender", msg.sender);

  for (const [label, token, expected] of [
    ["expired JWT", `Bearer ${env("TOKEN_EXPIRED")}`, "token expired"],
    ["dev token while a JWT key is configured", "5:brand", "unauthorized"],
    ["tampered JWT", `${env("TOKEN_A").slice(0, -4)}AAAA`, "invalid token"],
  ]) {
    const s = io(`${BASE_URL}/chat`, { auth: { token }, reconnection: false });
    const err = await waitFor(s, "connect_error", `connect_error for ${label}`);
    check(err.message === expected, `${label}: connect_error "${expected}"`, err.message);
    s.close();
  }
  A.disconnect();
  B.disconnect();
});
