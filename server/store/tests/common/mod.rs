//! What the store's test files share: users, messages, a page query, and a PostgreSQL database
//! per test.
#![allow(dead_code, unreachable_pub)]

#[path = "../../../tests/support/pg.rs"]
pub mod pg;

use chatwire_store::{
    AnyStore, HistoryQuery, MessageType, NewMessage, Store, TempId, UserKey, UserType,
};

pub fn brand(id: i64) -> UserKey {
    UserKey::new(UserType::Brand, id)
}
pub fn infl(id: i64) -> UserKey {
    UserKey::new(UserType::Influencer, id)
}

pub fn msg(
    conversation_id: i64,
    sender: UserKey,
    content: &str,
    temp: Option<TempId>,
) -> NewMessage {
    NewMessage {
        conversation_id,
        sender,
        message_type: MessageType::Text,
        content: content.into(),
        attachment_url: None,
        attachment_name: None,
        temp_id: temp,
    }
}

pub async fn send(store: &AnyStore, m: NewMessage) -> chatwire_store::Stored {
    store
        .insert_batch(&[m])
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap()
}

pub fn q(limit: u32) -> HistoryQuery<'static> {
    HistoryQuery {
        before: None,
        limit,
        search: None,
    }
}
