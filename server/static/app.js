// chatwire demo chat page: the guide's React flow (join, optimistic send reconciled by tempId,
// typing with a 2 s stop, read receipts, online status, notifications) in plain JavaScript, plus
// what a chat user expects around it (sign-in, conversation list, history, search, reconnect).
// Talks to the server it was loaded from: Socket.IO namespace /chat and the REST API /api/chat.
"use strict";

(() => {
  const PAGE_SIZE = 30;
  const TYPING_STOP_MS = 2000; // the guide: typing:stop after 2 s without a keystroke
  const TYPING_RESEND_MS = 1500; // repeat typing:start while typing (the server's timer is 6 s)
  const TYPING_SHOWN_MS = 7000; // hide someone's indicator if their typing:stop never comes

  const state = {
    token: null, // what goes in auth.token and the Authorization header
    me: null, // {userId, userType} from connection:success
    socket: null,
    conversations: new Map(), // id -> REST conversation, plus .unreadCount kept live
    order: [], // conversation ids, latest activity first
    current: null, // open conversation id
    messages: [], // messages of the open conversation, id order; pending ones at the end
    nextCursor: null,
    search: null, // {q, results} while a search is shown
    online: new Map(), // "type:id" -> boolean
    typing: new Map(), // "type:id" -> timer, for the open conversation
    lastRead: new Map(), // "type:id" -> highest messageId they read, open conversation
    nextTempId: Date.now(),
    typingSent: 0,
    typingStopTimer: null,
    connectedOnce: false,
  };

  // Drawing is in view.js; it reads `state` and calls back for clicks.
  const view = window.chatwireView(state, { open: (id) => openConversation(id), retry: (t) => retrySend(t) });
  const { $, key, isMe, el, others, convTitle, showProblem, setStatus } = view;
  const { renderConversations, renderPeer, renderMessages, renderTyping } = view;

  // ---- REST -------------------------------------------------------------------------------

  async function api(method, path, body) {
    const res = await fetch(`/api/chat${path}`, {
      method,
      headers: { Authorization: `Bearer ${state.token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) {
      const err = (data && data.error) || {};
      throw new Error(`${err.message || res.statusText} (${res.status}${err.code ? ` ${err.code}` : ""})`);
    }
    return data;
  }

  // ---- conversation list ------------------------------------------------------------------

  async function loadConversations() {
    const data = await api("GET", "/conversations?limit=100");
    state.conversations.clear();
    for (const c of data.conversations) state.conversations.set(c.id, c);
    state.order = data.conversations.map((c) => c.id);
    renderConversations();
    for (const c of data.conversations) for (const p of others(c)) checkOnline(p);
  }

  function touch(conversationId, msg, countUnread) {
    const conv = state.conversations.get(conversationId);
    if (!conv) {
      // A conversation someone just started with us: fetch the list again.
      loadConversations().catch((e) => showProblem(`Cannot load conversations: ${e.message}`));
      return;
    }
    if (!conv.lastMessage || msg.id >= conv.lastMessage.id) conv.lastMessage = msg;
    if (countUnread) conv.unreadCount = (conv.unreadCount || 0) + 1;
    state.order = [conversationId, ...state.order.filter((id) => id !== conversationId)];
    renderConversations();
  }

  // ---- presence ---------------------------------------------------------------------------

  function checkOnline(p) {
    if (state.socket && state.socket.connected) {
      state.socket.emit("user:check:online", { userId: p.userId, userType: p.userType });
    }
  }

  function setOnline(userId, userType, isOnline) {
    state.online.set(key(userId, userType), isOnline);
    renderConversations();
    renderPeer();
  }

  // ---- opening a conversation, history, search --------------------------------------------

  async function openConversation(id) {
    if (state.current !== null && state.current !== id && state.socket) {
      state.socket.emit("conversation:leave", { conversationId: state.current });
    }
    sendTypingStop();
    state.current = id;
    sessionStorage.setItem("chatwire.current", String(id));
    state.messages = [];
    state.nextCursor = null;
    state.search = null;
    state.lastRead.clear();
    for (const t of state.typing.values()) clearTimeout(t);
    state.typing.clear();
    renderTyping();
    $("search-q").value = "";
    $("empty").hidden = true;
    $("chat-inner").hidden = false;
    $("app").classList.add("in-chat");
    $("chat-title").textContent = convTitle(state.conversations.get(id));
    renderPeer();
    renderConversations();
    if (state.socket) state.socket.emit("conversation:join", { conversationId: id });
    for (const p of others(state.conversations.get(id))) checkOnline(p);
    await loadLatest();
    $("message-input").focus();
  }

  async function loadLatest() {
    const id = state.current;
    const data = await api("GET", `/conversations/${id}/messages?limit=${PAGE_SIZE}`);
    if (state.current !== id) return;
    mergeMessages(data.messages);
    if (state.nextCursor === null || state.messages.length <= data.messages.length) state.nextCursor = data.nextCursor;
    renderMessages(true);
    markRead();
  }

  async function loadOlder() {
    const id = state.current;
    const list = $("messages");
    const fromBottom = list.scrollHeight - list.scrollTop;
    const data = await api("GET", `/conversations/${id}/messages?limit=${PAGE_SIZE}&before=${state.nextCursor}`);
    if (state.current !== id) return;
    mergeMessages(data.messages);
    state.nextCursor = data.nextCursor;
    renderMessages(false);
    list.scrollTop = list.scrollHeight - fromBottom;
  }

  async function runSearch(q) {
    if (!q) return clearSearch();
    const id = state.current;
    const data = await api("GET", `/conversations/${id}/messages?limit=100&q=${encodeURIComponent(q)}`);
    if (state.current !== id) return;
    state.search = { q, results: data.messages.slice().reverse() };
    renderMessages(true);
  }

  function clearSearch() {
    state.search = null;
    $("search-q").value = "";
    renderMessages(true);
  }

  // Adds stored messages (any order) to the open conversation, without duplicates, in id order.
  function mergeMessages(incoming) {
    const known = new Set(state.messages.filter((m) => m.id).map((m) => m.id));
    const stored = state.messages.filter((m) => m.id);
    const pending = state.messages.filter((m) => !m.id);
    for (const m of incoming) if (!known.has(m.id)) stored.push(m);
    stored.sort((a, b) => a.id - b.id);
    state.messages = [...stored, ...pending];
  }

  // ---- read receipts ----------------------------------------------------------------------

  function markRead() {
    const conv = state.conversations.get(state.current);
    if (!conv || document.visibilityState === "hidden") return;
    const newestFromOthers = [...state.messages].reverse().find((m) => m.id && !isMe(m.sender.id, m.senderType));
    if (newestFromOthers && state.socket && state.socket.connected) {
      state.socket.emit("message:read", { conversationId: conv.id, messageId: newestFromOthers.id });
    }
    if (conv.unreadCount) {
      conv.unreadCount = 0;
      renderConversations();
    }
  }

  // ---- sending ----------------------------------------------------------------------------

  function send(content) {
    const conversationId = state.current;
    if (conversationId === null || !content.trim()) return;
    const tempId = ++state.nextTempId;
    state.messages.push({
      tempId, pending: "sending", content, conversationId, createdAt: new Date().toISOString(),
      sender: { id: state.me.userId }, senderType: state.me.userType, messageType: "text",
    });
    if (state.search) clearSearch();
    else renderMessages(true);
    state.socket.emit("message:send", { conversationId, content, messageType: "text", tempId });
    sendTypingStop();
  }

  function retrySend(tempId) {
    const msg = state.messages.find((m) => m.tempId === tempId && m.pending);
    if (!msg) return;
    msg.pending = "sending";
    renderMessages(false);
    // Same tempId: if the first attempt was stored after all, the server answers with it.
    state.socket.emit("message:send", { conversationId: msg.conversationId, content: msg.content, messageType: "text", tempId });
  }

  function onSent({ tempId, message }) {
    touch(message.conversationId, message, false);
    if (message.conversationId !== state.current) return;
    const index = state.messages.findIndex((m) => m.tempId === tempId && m.pending);
    if (index >= 0) state.messages.splice(index, 1);
    mergeMessages([message]);
    renderMessages(false);
  }

  function onSendError(data) {
    const msg = state.messages.find((m) => m.tempId === data.tempId && m.pending);
    if (msg) {
      msg.pending = "failed";
      msg.error = data.message || data.error;
      renderMessages(false);
    } else {
      showProblem(`Send failed: ${data.message || data.error}`);
    }
  }

  // ---- typing -----------------------------------------------------------------------------

  function onInput() {
    if (state.current === null || !state.socket) return;
    const now = Date.now();
    if (now - state.typingSent > TYPING_RESEND_MS) {
      state.socket.emit("typing:start", { conversationId: state.current });
      state.typingSent = now;
    }
    clearTimeout(state.typingStopTimer);
    state.typingStopTimer = setTimeout(sendTypingStop, TYPING_STOP_MS);
  }

  function sendTypingStop() {
    clearTimeout(state.typingStopTimer);
    state.typingStopTimer = null;
    if (state.typingSent && state.current !== null && state.socket) {
      state.socket.emit("typing:stop", { conversationId: state.current });
    }
    state.typingSent = 0;
  }

  function onTyping(data, on) {
    if (data.conversationId !== state.current || isMe(data.user.userId, data.user.userType)) return;
    const k = key(data.user.userId, data.user.userType);
    clearTimeout(state.typing.get(k));
    if (on) state.typing.set(k, setTimeout(() => { state.typing.delete(k); renderTyping(); }, TYPING_SHOWN_MS));
    else state.typing.delete(k);
    renderTyping();
  }

  // ---- the socket -------------------------------------------------------------------------

  function connect() {
    const socket = io("/chat", {
      auth: { token: state.token },
      reconnection: true,
      reconnectionDelay: 1000,
      reconnectionDelayMax: 5000,
      forceNew: true, // a new user in this tab gets a new connection, not the last one's
    });
    state.socket = socket;
    setStatus("connecting…", "");

    socket.on("connection:success", (data) => {
      const first = !state.connectedOnce;
      state.connectedOnce = true;
      state.me = { userId: data.userId, userType: data.userType };
      sessionStorage.setItem("chatwire.token", state.token);
      setStatus("connected", "connected");
      showProblem("");
      $("whoami").replaceChildren(el("span", { class: "wide-only", text: "signed in as " }), `${data.userType} ${data.userId}`);
      $("signout").hidden = false;
      $("signin").hidden = true;
      $("app").hidden = false;
      // First connect: load everything. Reconnect: catch up on what was missed meanwhile.
      loadConversations().then(() => {
        if (state.current !== null && state.conversations.has(state.current)) {
          if (first) openConversation(state.current);
          else {
            socket.emit("conversation:join", { conversationId: state.current });
            return loadLatest();
          }
        }
        return undefined;
      }).catch((e) => showProblem(`Cannot load conversations: ${e.message}`));
    });
    socket.on("connect_error", (err) => {
      if (!socket.active) {
        // Refused by the server (bad token): back to the sign-in form.
        showProblem(`The server refused the connection: ${err.message}`);
        signOut();
        setStatus("not connected", "offline");
      } else {
        setStatus("reconnecting…", "reconnecting");
      }
    });
    socket.on("disconnect", (reason) => {
      // Presence is unknown until the server answers again.
      state.online.clear();
      renderConversations();
      renderPeer();
      setStatus(socket.active ? "reconnecting…" : "disconnected", socket.active ? "reconnecting" : "offline");
      if (reason === "io server disconnect") showProblem("The server closed the connection.");
    });
    socket.io.on("reconnect_attempt", (n) => setStatus(`reconnecting… (attempt ${n})`, "reconnecting"));

    socket.on("message:new", (msg) => {
      touch(msg.conversationId, msg, msg.conversationId !== state.current);
      if (msg.conversationId === state.current) {
        mergeMessages([msg]);
        if (!state.search) renderMessages(false);
        if (!isMe(msg.sender.id, msg.senderType)) markRead();
      }
    });
    socket.on("message:notification", ({ conversationId, message }) => {
      if (conversationId === state.current) return;
      touch(conversationId, message, !isMe(message.sender.id, message.senderType));
    });
    socket.on("message:sent", onSent);
    socket.on("message:error", onSendError);
    socket.on("message:read", (data) => {
      if (data.conversationId !== state.current || isMe(data.readBy.userId, data.readBy.userType)) return;
      const k = key(data.readBy.userId, data.readBy.userType);
      state.lastRead.set(k, Math.max(state.lastRead.get(k) || 0, data.messageId));
      renderMessages(false);
    });
    socket.on("typing:start", (d) => onTyping(d, true));
    socket.on("typing:stop", (d) => onTyping(d, false));
    socket.on("user:online", (d) => setOnline(d.userId, d.userType, true));
    socket.on("user:offline", (d) => setOnline(d.userId, d.userType, false));
    socket.on("user:online:status", (d) => setOnline(d.userId, d.userType, d.isOnline));
    socket.on("conversation:error", (d) => showProblem(`Conversation ${d.conversationId}: ${d.message || d.error}`));
    socket.on("error", (d) => showProblem(`${d.event || "error"}: ${d.message || d.error}`));
  }

  // ---- sign in / out ----------------------------------------------------------------------

  function signIn(token) {
    state.token = token;
    state.connectedOnce = false;
    connect();
  }

  function signOut() {
    if (state.socket) {
      state.socket.removeAllListeners();
      state.socket.disconnect();
      state.socket = null;
    }
    sessionStorage.removeItem("chatwire.token");
    sessionStorage.removeItem("chatwire.current");
    state.me = null;
    state.current = null;
    state.conversations.clear();
    state.order = [];
    $("app").hidden = true;
    $("signin").hidden = false;
    $("signout").hidden = true;
    $("whoami").textContent = "";
    $("chat-inner").hidden = true;
    $("empty").hidden = false;
    document.title = "chatwire";
    setStatus("not connected", "");
    $("signin-id").focus();
  }

  function parseMembers(text) {
    const members = [];
    for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
      const m = /^(brand|influencer)\s*[: ]\s*(\d+)$/i.exec(part) || /^(\d+)\s*:\s*(brand|influencer)$/i.exec(part);
      if (!m) throw new Error(`"${part}" is not like "brand 2"`);
      const [type, id] = /^\d/.test(m[1]) ? [m[2], m[1]] : [m[1], m[2]];
      members.push({ userId: Number(id), userType: type.toLowerCase() });
    }
    if (members.length === 0) throw new Error("name at least one member");
    return members;
  }

  async function startConversation(body) {
    try {
      const conv = await api("POST", "/conversations", body);
      showProblem("");
      if (!state.conversations.has(conv.id)) {
        state.conversations.set(conv.id, conv);
        state.order = [conv.id, ...state.order];
      }
      for (const p of others(conv)) checkOnline(p);
      await openConversation(conv.id);
    } catch (e) {
      showProblem(`Cannot start the conversation: ${e.message}`);
    }
  }

  function wire() {
    $("signin-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const form = e.target;
      const jwt = form.token.value.trim().replace(/^Bearer\s+/i, "");
      const id = Number(form.userId.value);
      if (!jwt && !(Number.isInteger(id) && id > 0)) return showProblem("The user id is a positive whole number.");
      showProblem("");
      signIn(jwt || `${id}:${form.userType.value}`);
    });
    $("signout").addEventListener("click", () => signOut());
    $("new-direct").addEventListener("submit", (e) => {
      e.preventDefault();
      startConversation({ participantId: Number($("new-id").value), participantType: $("new-type").value });
    });
    $("new-group").addEventListener("submit", (e) => {
      e.preventDefault();
      try {
        const participants = parseMembers($("group-members").value);
        const title = $("group-title").value.trim();
        startConversation(title ? { participants, title } : { participants });
      } catch (err) {
        showProblem(`Cannot create the group: ${err.message}`);
      }
    });
    $("older").addEventListener("click", () => loadOlder().catch((e) => showProblem(e.message)));
    $("search").addEventListener("submit", (e) => {
      e.preventDefault();
      runSearch($("search-q").value.trim()).catch((err) => showProblem(`Search failed: ${err.message}`));
    });
    $("search-q").addEventListener("keydown", (e) => { if (e.key === "Escape") clearSearch(); });
    $("search-clear").addEventListener("click", clearSearch);
    $("back").addEventListener("click", () => $("app").classList.remove("in-chat"));
    const input = $("message-input");
    input.addEventListener("input", onInput);
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $("composer").requestSubmit();
      }
    });
    $("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      const text = input.value;
      if (!text.trim()) return;
      input.value = "";
      send(text);
    });
    document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") markRead(); });
    window.addEventListener("pagehide", () => sendTypingStop());
  }

  function start() {
    wire();
    if (typeof io !== "function") {
      // The server could not find the socket.io-client bundle: show its explanation.
      setStatus("no client", "offline");
      fetch("/socket.io/socket.io.min.js").then((r) => r.text()).then((text) => {
        showProblem(`The Socket.IO client did not load.\n${text.slice(0, 500)}`);
      }, () => showProblem("The Socket.IO client did not load: is the server running?"));
      return; // nothing works without it: no sign-in form

    }
    // Remember who this tab is and which conversation is open, across reloads.
    const saved = sessionStorage.getItem("chatwire.token");
    const current = Number(sessionStorage.getItem("chatwire.current"));
    if (current > 0) state.current = current;
    if (saved) signIn(saved);
    else {
      $("signin").hidden = false;
      $("signin-id").focus();
    }
  }

  start();
})();
