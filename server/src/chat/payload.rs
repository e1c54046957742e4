//! Typed parsing of chat event payloads out of the decoded JSON value: each request struct has
//! one `parse` that returns it or a `bad_request` saying which field is wrong.

use chatwire_protocol::json::Value;
use simd_json::StaticNode;

use super::error::ChatError;
use crate::store::{UserKey, UserType};

/// Field `name` of an object payload.
pub fn field<'a>(payload: &'a Value, name: &str) -> Option<&'a Value> {
    match payload {
        Value::Object(map) => map.get(name),
        _ => None,
    }
}

/// A positive id given as a JSON integer or a numeric string (`123` or `"123"`).
pub fn positive_id(value: Option<&Value>, name: &str) -> Result<i64, ChatError> {
    let bad = || ChatError::bad_request(format!("{name} must be a positive integer"));
    let id = match value {
        Some(Value::Static(StaticNode::I64(n))) => *n,
        Some(Value::Static(StaticNode::U64(n))) => i64::try_from(*n).map_err(|_| bad())?,
        Some(Value::Static(StaticNode::F64(f))) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            *f as i64
        }
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse::<i64>().map_err(|_| bad())?
        }
        Some(_) => return Err(bad()),
        None => return Err(ChatError::bad_request(format!("{name} is required"))),
    };
    if id <= 0 {
        return Err(bad());
    }
    Ok(id)
}

/// `{conversationId}` (join, leave, typing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationRef {
    /// The conversation.
    pub conversation_id: i64,
}

impl ConversationRef {
    /// Parses the payload.
    pub fn parse(payload: &Value) -> Result<Self, ChatError> {
        if !matches!(payload, Value::Object(_)) {
            return Err(ChatError::bad_request("payload must be an object"));
        }
        Ok(Self {
            conversation_id: positive_id(field(payload, "conversationId"), "conversationId")?,
        })
    }
}

/// `{conversationId, messageId?}` (message:read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    /// The conversation.
    pub conversation_id: i64,
    /// Read up to this message; `None` = up to the newest.
    pub message_id: Option<i64>,
}

impl ReadRequest {
    /// Parses the payload.
    pub fn parse(payload: &Value) -> Result<Self, ChatError> {
        let conv = ConversationRef::parse(payload)?;
        let message_id = match field(payload, "messageId") {
            None | Some(Value::Static(StaticNode::Null)) => None,
            some => Some(positive_id(some, "messageId")?),
        };
        Ok(Self {
            conversation_id: conv.conversation_id,
            message_id,
        })
    }
}

/// `{userId, userType}` (user:check:online).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRef {
    /// The user asked about.
    pub user: UserKey,
}

impl UserRef {
    /// Parses the payload.
    pub fn parse(payload: &Value) -> Result<Self, ChatError> {
        if !matches!(payload, Value::Object(_)) {
            return Err(ChatError::bad_request("payload must be an object"));
        }
        let id = positive_id(field(payload, "userId"), "userId")?;
        let user_type = match field(payload, "userType") {
            Some(Value::String(s)) => UserType::parse(s.as_str()),
            _ => None,
        }
        .ok_or_else(|| ChatError::bad_request("userType must be \"brand\" or \"influencer\""))?;
        Ok(Self {
            user: UserKey { user_type, id },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(s: &str) -> Value {
        let mut b = s.as_bytes().to_vec();
        simd_json::to_owned_value(&mut b).unwrap()
    }

    #[test]
    fn conversation_id_number_or_numeric_string() {
        assert_eq!(
            ConversationRef::parse(&parse(r#"{"conversationId":12}"#))
                .unwrap()
                .conversation_id,
            12
        );
        assert_eq!(
            ConversationRef::parse(&parse(r#"{"conversationId":"12"}"#))
                .unwrap()
                .conversation_id,
            12
        );
        for bad in [
            r#"{"conversationId":"x1"}"#,
            r#"{"conversationId":-1}"#,
            r#"{}"#,
            r#"[1]"#,
            r#"{"conversationId":1.5}"#,
            r#"{"conversationId":"99999999999999999999"}"#,
        ] {
            assert!(ConversationRef::parse(&parse(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn read_request_message_id_optional() {
        let r = ReadRequest::parse(&parse(r#"{"conversationId":1}"#)).unwrap();
        assert_eq!(r.message_id, None);
        let r = ReadRequest::parse(&parse(r#"{"conversationId":1,"messageId":"7"}"#)).unwrap();
        assert_eq!(r.message_id, Some(7));
        assert!(ReadRequest::parse(&parse(r#"{"conversationId":1,"messageId":true}"#)).is_err());
    }

    #[test]
    fn user_ref() {
        let u = UserRef::parse(&parse(r#"{"userId":"5","userType":"brand"}"#)).unwrap();
        assert_eq!(
            u.user,
            UserKey {
                user_type: UserType::Brand,
                id: 5
            }
        );
        assert!(UserRef::parse(&parse(r#"{"userId":5,"userType":"admin"}"#)).is_err());
    }
}
