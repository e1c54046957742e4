// chatwire demo chat page: drawing. Builds the conversation list, the chat header, the message
// bubbles and the typing line from the state app.js owns (text only through textContent), and
// calls app.js back for clicks (open a conversation, retry a send).
"use strict";

window.chatwireView = (state, actions) => {
  const $ = (id) => document.getElementById(id);
  const key = (userId, userType) => `${userType}:${userId}`;
  const isMe = (userId, userType) => state.me && state.me.userId === userId && state.me.userType === userType;

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-") || k.startsWith("aria-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) if (c) node.append(c);
    return node;
  }

  function showProblem(text) {
    const box = $("problem");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function setStatus(text, cls) {
    const s = $("status");
    s.textContent = text;
    s.className = `status ${cls || ""}`;
  }

  function personName(p) {
    if (!p) return "someone";
    const full = [p.firstName, p.lastName].filter(Boolean).join(" ");
    return full || p.username || `${p.userType} ${p.userId}`;
  }

  function others(conv) {
    return (conv.participants || []).filter((p) => !isMe(p.userId, p.userType));
  }

  function convTitle(conv) {
    if (conv.type === "group") return conv.title || others(conv).map(personName).join(", ") || "Group";
    return personName(others(conv)[0]);
  }

  function senderName(msg) {
    const conv = state.conversations.get(msg.conversationId);
    const p = conv && (conv.participants || []).find((x) => x.userId === msg.sender.id && x.userType === msg.senderType);
    return p ? personName(p) : msg.sender.username || `${msg.senderType} ${msg.sender.id}`;
  }

  function preview(msg) {
    if (!msg) return "No messages yet";
    const text = msg.content || msg.attachmentName || msg.messageType;
    return (isMe(msg.sender.id, msg.senderType) ? "You: " : "") + text;
  }

  function renderConversations() {
    const list = $("conversations");
    list.replaceChildren();
    for (const id of state.order) {
      const c = state.conversations.get(id);
      const peer = c.type === "direct" ? others(c)[0] : null;
      const online = peer && state.online.get(key(peer.userId, peer.userType));
      const dot = el("span", { class: `dot${c.type === "group" ? " group" : online ? " online" : ""}`, "aria-hidden": "true" });
      const unread = c.unreadCount > 0 ? el("span", { class: "badge", text: String(c.unreadCount) }) : null;
      const known = peer && state.online.has(key(peer.userId, peer.userType));
      const label = `${convTitle(c)}${known ? (online ? ", online" : ", offline") : ""}${c.unreadCount ? `, ${c.unreadCount} unread` : ""}`;
      const button = el("button", { type: "button", class: "conv", "data-id": String(id), "aria-label": label },
        dot, el("span", { class: "name", text: convTitle(c) }), unread || el("span"),
        el("span", { class: "last", text: preview(c.lastMessage) }));
      if (id === state.current) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => actions.open(id));
      list.append(el("li", {}, button));
    }
    $("no-conversations").hidden = state.order.length > 0;
    const total = [...state.conversations.values()].reduce((n, c) => n + (c.unreadCount || 0), 0);
    document.title = total > 0 ? `(${total}) chatwire` : "chatwire";
  }

  function renderPeer() {
    const conv = state.conversations.get(state.current);
    if (!conv) return;
    const dot = $("peer-dot");
    const status = $("peer-status");
    if (conv.type === "group") {
      const names = others(conv);
      const up = names.filter((p) => state.online.get(key(p.userId, p.userType))).length;
      dot.className = `dot${up > 0 ? " online" : ""}`;
      status.textContent = `${names.length + 1} members, ${up} other${up === 1 ? "" : "s"} online`;
    } else {
      const p = others(conv)[0];
      const on = p && state.online.get(key(p.userId, p.userType));
      dot.className = `dot${on ? " online" : ""}`;
      // Unknown while we are disconnected ourselves.
      status.textContent = on === undefined ? "" : on ? "online" : "offline";
    }
  }

  function isReadByAll(msg) {
    if (msg.isRead) return true;
    const conv = state.conversations.get(msg.conversationId);
    const rest = conv ? others(conv) : [];
    return rest.length > 0 && rest.every((p) => (state.lastRead.get(key(p.userId, p.userType)) || 0) >= msg.id);
  }

  function renderMessage(msg) {
    const mine = msg.pending ? true : isMe(msg.sender.id, msg.senderType);
    const conv = state.conversations.get(state.current);
    const item = el("li", {
      class: `msg${mine ? " mine" : ""}${msg.pending === "sending" ? " sending" : ""}${msg.pending === "failed" ? " failed" : ""}`,
      "data-id": msg.id ? String(msg.id) : "",
      "data-temp-id": msg.tempId !== undefined && msg.tempId !== null ? String(msg.tempId) : "",
    });
    if (!mine && conv && conv.type === "group") item.append(el("span", { class: "from", text: senderName(msg) }));
    item.append(el("span", { class: "text", text: msg.content }));
    if (msg.attachmentUrl && /^https?:\/\//.test(msg.attachmentUrl)) {
      item.append(" ", el("a", { href: msg.attachmentUrl, target: "_blank", rel: "noopener noreferrer", text: msg.attachmentName || "attachment" }));
    }
    const meta = el("span", { class: "meta" });
    meta.append(el("time", { text: new Date(msg.createdAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) }));
    if (msg.pending === "sending") {
      meta.append(el("span", { class: "receipt", text: "sending…" }));
    } else if (msg.pending === "failed") {
      meta.append(el("span", { class: "error", text: `not sent: ${msg.error}` }));
      const retry = el("button", { type: "button", class: "retry", text: "Retry" });
      retry.addEventListener("click", () => actions.retry(msg.tempId));
      meta.append(retry);
    } else if (mine) {
      const read = isReadByAll(msg);
      meta.append(el("span", {
        class: `receipt${read ? " read" : ""}`, text: read ? "✓✓" : "✓", title: read ? "read" : "delivered",
        "aria-label": read ? "read" : "sent",
      }));
    }
    item.append(meta);
    return item;
  }

  function renderMessages(scrollToEnd) {
    const box = $("messages");
    const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const searching = state.search !== null;
    const shown = searching ? state.search.results : state.messages;
    $("message-list").replaceChildren(...shown.map(renderMessage));
    $("older").hidden = searching || !state.nextCursor;
    $("search-bar").hidden = !searching;
    if (searching) {
      const n = state.search.results.length;
      $("search-info").textContent = `${n} message${n === 1 ? "" : "s"} matching “${state.search.q}”`;
    }
    if (scrollToEnd || atEnd) box.scrollTop = box.scrollHeight;
  }

  function renderTyping() {
    const conv = state.conversations.get(state.current);
    const names = [...state.typing.keys()].map((k) => {
      const p = conv && (conv.participants || []).find((x) => key(x.userId, x.userType) === k);
      return p ? personName(p) : k.replace(":", " ");
    });
    $("typing").textContent = names.length === 0 ? ""
      : `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
  }

  return {
    $, key, isMe, el, others, convTitle, personName, showProblem, setStatus,
    renderConversations, renderPeer, renderMessages, renderTyping,
  };
};
