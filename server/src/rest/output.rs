//! JSON bodies of REST answers: conversations, pages, unread counts (contract section 6 shapes).

use chatwire_store::{
    Conversation, ConversationPage, MessagePage, UnreadCounts, json_i64, json_opt_str, json_str,
    json_timestamp,
};

/// `{id, type, title, participants: [...], lastMessage, unreadCount, updatedAt}`.
pub(crate) fn conversation(c: &Conversation, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":");
    json_i64(out, c.id);
    out.extend_from_slice(b",\"type\":");
    json_str(out, c.kind.as_str());
    out.extend_from_slice(b",\"title\":");
    json_opt_str(out, c.title.as_deref());
    out.extend_from_slice(b",\"participants\":[");
    for (i, p) in c.participants.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"userId\":");
        json_i64(out, p.user.id);
        out.extend_from_slice(b",\"userType\":");
        json_str(out, p.user.user_type.as_str());
        out.extend_from_slice(b",\"username\":");
        json_str(out, &p.profile.username);
        out.extend_from_slice(b",\"firstName\":");
        json_opt_str(out, p.profile.first_name.as_deref());
        out.extend_from_slice(b",\"lastName\":");
        json_opt_str(out, p.profile.last_name.as_deref());
        out.extend_from_slice(b",\"profileImage\":");
        json_opt_str(out, p.profile.profile_image.as_deref());
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"lastMessage\":");
    match &c.last_message {
        Some(m) => m.write_json(out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"unreadCount\":");
    json_i64(out, c.unread_count);
    out.extend_from_slice(b",\"updatedAt\":");
    json_timestamp(out, c.updated_at_ms);
    out.push(b'}');
}

/// `{conversations: [...], nextCursor}`.
pub(crate) fn conversation_page(p: &ConversationPage) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 * (p.conversations.len() + 1));
    out.extend_from_slice(b"{\"conversations\":[");
    for (i, c) in p.conversations.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        conversation(c, &mut out);
    }
    out.extend_from_slice(b"],\"nextCursor\":");
    json_opt_str(&mut out, p.next_cursor.map(|c| c.encode()).as_deref());
    out.push(b'}');
    out
}

/// `{messages: [...], nextCursor}` (the cursor is a message id).
pub(crate) fn message_page(p: &MessagePage) -> Vec<u8> {
    let mut out = Vec::with_capacity(320 * (p.messages.len() + 1));
    out.extend_from_slice(b"{\"messages\":[");
    for (i, m) in p.messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        m.write_json(&mut out);
    }
    out.extend_from_slice(b"],\"nextCursor\":");
    match p.next_cursor {
        Some(id) => json_i64(&mut out, id),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    out
}

/// `{total, conversations: [{conversationId, unread}]}`.
pub(crate) fn unread(u: &UnreadCounts) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 40 * u.conversations.len());
    out.extend_from_slice(b"{\"total\":");
    json_i64(&mut out, u.total);
    out.extend_from_slice(b",\"conversations\":[");
    for (i, (id, n)) in u.conversations.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"conversationId\":");
        json_i64(&mut out, *id);
        out.extend_from_slice(b",\"unread\":");
        json_i64(&mut out, *n);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}
