//! In-process store (`DATABASE_URL=memory`): the same semantics as the SQL stores (idempotent
//! sends, read pointers, hidden conversations, cursors), nothing survives a restart. Used by tests
//! and demos. One mutex, never held across an await.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use ahash::{HashMap, HashSet};

use super::read_state::ReadFloor;
use super::{
    Conversation, ConversationCursor, ConversationKind, ConversationPage, HistoryQuery, Message,
    MessagePage, MessageType, NewMessage, Outcome, Participant, Profile, Store, StoreError, Stored,
    UnreadCounts, UserKey,
};

/// In-memory implementation of [`Store`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Everything, behind one lock (operations are short and never await while holding it).
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Profiles by user.
    users: HashMap<UserKey, Arc<Profile>>,
    /// Conversations by id.
    conversations: HashMap<i64, Conv>,
    /// The 1:1 conversation of each (sorted) pair.
    direct: HashMap<(UserKey, UserKey), i64>,
    /// Conversation ids of each user.
    by_user: HashMap<UserKey, Vec<i64>>,
    /// Idempotency keys: (sender, conversation, tempId key) -> message id.
    keys: HashMap<(UserKey, i64, String), i64>,
    /// Last conversation id handed out.
    last_conversation_id: i64,
    /// Last message id handed out.
    last_message_id: i64,
    /// Last timestamp handed out (keeps time non-decreasing).
    last_ms: i64,
    /// Recoverable sessions by pid.
    recovery: HashMap<String, super::RecoverySession>,
}

#[derive(Debug)]
struct Conv {
    /// direct / group.
    kind: ConversationKind,
    /// Group title.
    title: Option<String>,
    /// Sorted participants.
    participants: Arc<[UserKey]>,
    /// Read pointers (0 = nothing read).
    pointers: HashMap<UserKey, i64>,
    /// Users who hid the conversation.
    hidden: HashSet<UserKey>,
    /// Last activity.
    updated_at_ms: i64,
    /// Messages in id order.
    messages: Vec<Row>,
}

#[derive(Debug, Clone)]
struct Row {
    id: i64,
    sender: UserKey,
    message_type: MessageType,
    content: String,
    attachment_url: Option<String>,
    attachment_name: Option<String>,
    created_at_ms: i64,
}

impl MemoryStore {
    /// Stores messages at once, on the caller's thread (nothing to wait for in memory): the
    /// server commits memory-store messages inline, with no writer thread and no window.
    pub fn insert_now(&self, batch: &[NewMessage]) -> Vec<Outcome> {
        let mut inner = self.lock();
        batch.iter().map(|m| inner.insert_one(m)).collect()
    }

    /// The highest message id handed out (0: none).
    pub fn newest_message_id(&self) -> i64 {
        self.lock().last_message_id
    }

    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Inner {
    fn now(&mut self) -> i64 {
        self.last_ms = self.last_ms.max(wall_ms());
        self.last_ms
    }

    fn profile(&mut self, user: UserKey) -> Arc<Profile> {
        self.users
            .entry(user)
            .or_insert_with(|| Arc::new(Profile::default_for(user)))
            .clone()
    }

    fn conv_for(&self, id: i64, user: UserKey) -> Result<&Conv, StoreError> {
        let conv = self.conversations.get(&id).ok_or(StoreError::NotFound)?;
        if conv.participants.binary_search(&user).is_err() {
            return Err(StoreError::Forbidden);
        }
        Ok(conv)
    }

    fn message(&self, conversation_id: i64, row: &Row, floor: &ReadFloor) -> Message {
        Message {
            id: row.id,
            conversation_id,
            sender: row.sender,
            sender_profile: self
                .users
                .get(&row.sender)
                .cloned()
                .unwrap_or_else(|| Arc::new(Profile::default_for(row.sender))),
            message_type: row.message_type,
            content: row.content.clone(),
            attachment_url: row.attachment_url.clone(),
            attachment_name: row.attachment_name.clone(),
            created_at_ms: row.created_at_ms,
            is_read: floor.is_read(row.sender, row.id),
            temp_id: None,
        }
    }

    fn view(&self, id: i64, viewer: UserKey) -> Result<Conversation, StoreError> {
        let conv = self.conv_for(id, viewer)?;
        let floor = ReadFloor::new(conv.pointers.iter().map(|(u, p)| (*u, *p)));
        let pointer = conv.pointers.get(&viewer).copied().unwrap_or(0);
        let start = conv.messages.partition_point(|r| r.id <= pointer);
        let unread = conv.messages[start..]
            .iter()
            .filter(|r| r.sender != viewer)
            .count() as i64;
        Ok(Conversation {
            id,
            kind: conv.kind,
            title: conv.title.clone(),
            participants: conv
                .participants
                .iter()
                .map(|u| Participant {
                    user: *u,
                    profile: self
                        .users
                        .get(u)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Profile::default_for(*u))),
                })
                .collect(),
            last_message: conv.messages.last().map(|r| self.message(id, r, &floor)),
            unread_count: unread,
            updated_at_ms: conv.updated_at_ms,
        })
    }

    fn create(
        &mut self,
        kind: ConversationKind,
        title: Option<String>,
        mut users: Vec<UserKey>,
    ) -> i64 {
        users.sort();
        users.dedup();
        for u in &users {
            self.profile(*u);
        }
        self.last_conversation_id += 1;
        let id = self.last_conversation_id;
        let now = self.now();
        for u in &users {
            self.by_user.entry(*u).or_default().push(id);
        }
        self.conversations.insert(
            id,
            Conv {
                kind,
                title,
                pointers: users.iter().map(|u| (*u, 0)).collect(),
                participants: users.into(),
                hidden: HashSet::default(),
                updated_at_ms: now,
                messages: Vec::new(),
            },
        );
        id
    }

    fn insert_one(&mut self, m: &NewMessage) -> Outcome {
        let key = m
            .temp_id
            .as_ref()
            .map(|t| (m.sender, m.conversation_id, t.key()));
        let conv = self.conv_for(m.conversation_id, m.sender)?;
        if let Some(existing) = key.as_ref().and_then(|k| self.keys.get(k)) {
            let idx = conv
                .messages
                .binary_search_by_key(existing, |r| r.id)
                .map_err(|_| StoreError::Internal("idempotency key without message".into()))?;
            let floor = ReadFloor::new(conv.pointers.iter().map(|(u, p)| (*u, *p)));
            let mut message = self.message(m.conversation_id, &conv.messages[idx], &floor);
            message.temp_id = m.temp_id.clone();
            return Ok(Stored {
                message,
                duplicate: true,
                prev: None,
            });
        }
        let now = self.now();
        self.last_message_id += 1;
        let id = self.last_message_id;
        let row = Row {
            id,
            sender: m.sender,
            message_type: m.message_type,
            content: m.content.clone(),
            attachment_url: m.attachment_url.clone(),
            attachment_name: m.attachment_name.clone(),
            created_at_ms: now,
        };
        let sender_profile = self.profile(m.sender);
        let conv = self
            .conversations
            .get_mut(&m.conversation_id)
            .ok_or(StoreError::NotFound)?;
        let prev = conv.messages.last().map_or(0, |r| r.id);
        conv.messages.push(row.clone());
        conv.updated_at_ms = now;
        conv.hidden.clear();
        let floor = ReadFloor::new(conv.pointers.iter().map(|(u, p)| (*u, *p)));
        if let Some(k) = key {
            self.keys.insert(k, id);
        }
        Ok(Stored {
            message: Message {
                id,
                conversation_id: m.conversation_id,
                sender: m.sender,
                sender_profile,
                message_type: row.message_type,
                content: row.content,
                attachment_url: row.attachment_url,
                attachment_name: row.attachment_name,
                created_at_ms: now,
                is_read: floor.is_read(m.sender, id),
                temp_id: m.temp_id.clone(),
            },
            duplicate: false,
            prev: Some(prev),
        })
    }
}

impl Store for MemoryStore {
    async fn ensure_user(
        &self,
        user: UserKey,
        profile: Option<Profile>,
    ) -> Result<Arc<Profile>, StoreError> {
        if user.id <= 0 {
            return Err(StoreError::BadRequest(
                "user ids are positive integers".into(),
            ));
        }
        let mut inner = self.lock();
        Ok(match profile {
            Some(p) => {
                let p = Arc::new(p);
                inner.users.insert(user, p.clone());
                p
            }
            None => inner.profile(user),
        })
    }

    async fn participants(
        &self,
        conversation_id: i64,
    ) -> Result<Option<Arc<[UserKey]>>, StoreError> {
        Ok(self
            .lock()
            .conversations
            .get(&conversation_id)
            .map(|c| c.participants.clone()))
    }

    async fn conversations_of(&self, user: UserKey) -> Result<Vec<i64>, StoreError> {
        Ok(self.lock().by_user.get(&user).cloned().unwrap_or_default())
    }

    async fn insert_batch(&self, batch: &[NewMessage]) -> Result<Vec<Outcome>, StoreError> {
        Ok(self.insert_now(batch))
    }

    async fn mark_read(
        &self,
        conversation_id: i64,
        reader: UserKey,
        up_to: Option<i64>,
    ) -> Result<i64, StoreError> {
        let mut inner = self.lock();
        let conv = inner.conv_for(conversation_id, reader)?;
        let target = match up_to {
            Some(id) => {
                conv.messages
                    .binary_search_by_key(&id, |r| r.id)
                    .map_err(|_| StoreError::NotFound)?;
                id
            }
            None => conv.messages.last().map_or(0, |r| r.id),
        };
        if let Some(conv) = inner.conversations.get_mut(&conversation_id) {
            let ptr = conv.pointers.entry(reader).or_insert(0);
            *ptr = (*ptr).max(target);
        }
        Ok(target)
    }

    async fn create_direct(
        &self,
        caller: UserKey,
        other: UserKey,
    ) -> Result<(Conversation, bool), StoreError> {
        crate::check_direct_pair(caller, other)?;
        let pair = (caller.min(other), caller.max(other));
        let mut inner = self.lock();
        if let Some(&id) = inner.direct.get(&pair) {
            if let Some(conv) = inner.conversations.get_mut(&id) {
                conv.hidden.remove(&caller);
            }
            return Ok((inner.view(id, caller)?, false));
        }
        let id = inner.create(ConversationKind::Direct, None, vec![caller, other]);
        inner.direct.insert(pair, id);
        Ok((inner.view(id, caller)?, true))
    }

    async fn create_group(
        &self,
        caller: UserKey,
        members: &[UserKey],
        title: Option<String>,
        max_participants: usize,
    ) -> Result<Conversation, StoreError> {
        let users = super::group_members(caller, members, max_participants)?;
        let mut inner = self.lock();
        let id = inner.create(ConversationKind::Group, title, users);
        inner.view(id, caller)
    }

    async fn list_conversations(
        &self,
        user: UserKey,
        before: Option<ConversationCursor>,
        limit: u32,
    ) -> Result<ConversationPage, StoreError> {
        let inner = self.lock();
        let mut keys: Vec<(i64, i64)> = inner
            .by_user
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.conversations.get(id).map(|c| (id, c)))
            .filter(|(_, c)| !c.hidden.contains(&user))
            .map(|(id, c)| (c.updated_at_ms, *id))
            .filter(|k| before.is_none_or(|b| *k < (b.updated_at_ms, b.id)))
            .collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        let limit = limit.max(1) as usize;
        let more = keys.len() > limit;
        keys.truncate(limit);
        let conversations = keys
            .iter()
            .map(|(_, id)| inner.view(*id, user))
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = more
            .then(|| {
                keys.last().map(|(ms, id)| ConversationCursor {
                    updated_at_ms: *ms,
                    id: *id,
                })
            })
            .flatten();
        Ok(ConversationPage {
            conversations,
            next_cursor,
        })
    }

    async fn history(
        &self,
        conversation_id: i64,
        viewer: UserKey,
        query: HistoryQuery<'_>,
    ) -> Result<MessagePage, StoreError> {
        let inner = self.lock();
        let conv = inner.conv_for(conversation_id, viewer)?;
        let floor = ReadFloor::new(conv.pointers.iter().map(|(u, p)| (*u, *p)));
        let end = query.before.map_or(conv.messages.len(), |b| {
            conv.messages.partition_point(|r| r.id < b)
        });
        let needle = query.search.map(str::to_lowercase);
        let limit = query.limit.max(1) as usize;
        let mut rows = conv.messages[..end].iter().rev().filter(|r| {
            needle
                .as_ref()
                .is_none_or(|n| r.content.to_lowercase().contains(n.as_str()))
        });
        let messages: Vec<Message> = rows
            .by_ref()
            .take(limit)
            .map(|r| inner.message(conversation_id, r, &floor))
            .collect();
        let more = rows.next().is_some();
        let next_cursor = if more {
            messages.last().map(|m| m.id)
        } else {
            None
        };
        Ok(MessagePage {
            messages,
            next_cursor,
        })
    }

    async fn unread_counts(&self, user: UserKey) -> Result<UnreadCounts, StoreError> {
        let inner = self.lock();
        let mut ids = inner.by_user.get(&user).cloned().unwrap_or_default();
        ids.sort_unstable();
        let mut out = UnreadCounts {
            total: 0,
            conversations: Vec::new(),
        };
        for id in ids {
            if inner
                .conversations
                .get(&id)
                .is_some_and(|c| c.hidden.contains(&user))
            {
                continue;
            }
            let unread = inner.view(id, user)?.unread_count;
            if unread > 0 {
                out.total += unread;
                out.conversations.push((id, unread));
            }
        }
        Ok(out)
    }

    async fn hide(&self, conversation_id: i64, user: UserKey) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.conv_for(conversation_id, user)?;
        if let Some(conv) = inner.conversations.get_mut(&conversation_id) {
            conv.hidden.insert(user);
        }
        Ok(())
    }

    async fn last_message_ids(&self, user: UserKey) -> Result<Vec<(i64, i64)>, StoreError> {
        let inner = self.lock();
        let mut ids: Vec<(i64, i64)> = inner
            .by_user
            .get(&user)
            .map(|convs| {
                convs
                    .iter()
                    .map(|c| {
                        let last = inner
                            .conversations
                            .get(c)
                            .and_then(|conv| conv.messages.last())
                            .map_or(0, |m| m.id);
                        (*c, last)
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        Ok(ids)
    }

    async fn read_pointers(
        &self,
        conversations: &[i64],
    ) -> Result<Vec<(i64, UserKey, i64)>, StoreError> {
        let inner = self.lock();
        let mut out = Vec::new();
        for c in conversations {
            if let Some(conv) = inner.conversations.get(c) {
                out.extend(
                    conv.pointers
                        .iter()
                        .filter(|(_, p)| **p > 0)
                        .map(|(u, p)| (*c, *u, *p)),
                );
            }
        }
        Ok(out)
    }

    async fn recovery_save(&self, session: &super::RecoverySession) -> Result<(), StoreError> {
        self.lock()
            .recovery
            .insert(session.pid.clone(), session.clone());
        Ok(())
    }

    async fn recovery_load(
        &self,
        pid: &str,
        now_ms: i64,
    ) -> Result<Option<super::RecoverySession>, StoreError> {
        Ok(self
            .lock()
            .recovery
            .get(pid)
            .filter(|s| s.expires_at_ms > now_ms)
            .cloned())
    }

    async fn recovery_touch(&self, pids: &[String], expires_at_ms: i64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for pid in pids {
            if let Some(s) = inner.recovery.get_mut(pid) {
                s.expires_at_ms = expires_at_ms;
            }
        }
        Ok(())
    }

    async fn recovery_delete(&self, pids: &[String]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for pid in pids {
            inner.recovery.remove(pid);
        }
        Ok(())
    }

    async fn recovery_purge(&self, now_ms: i64) -> Result<(), StoreError> {
        self.lock().recovery.retain(|_, s| s.expires_at_ms > now_ms);
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
