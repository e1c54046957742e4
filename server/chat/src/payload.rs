//! Typed parsing of chat event payloads out of the decoded JSON value: each request struct has
//! one `parse` that returns it or a `bad_request` saying which field is wrong.

use chatwire_protocol::json::Value;
use simd_json::StaticNode;

use super::error::ChatError;
use chatwire_store::{UserKey, UserType};

/// Field `name` of an object payload.
pub fn field<'a>(payload: &'a Value, name: &str) -> Option<&'a Value> {
    match payload {
        Value::Object(map) => map.get(name),
        _ => None,
    }
}

/// A required id field, read by the one id rule ([`crate::id`]).
pub fn positive_id(value: Option<&Value>, name: &str) -> Result<i64, ChatError> {
    match value {
        Some(v) => crate::id::from_value(v)
            .ok_or_else(|| ChatError::bad_request(format!("{name} must be a positive integer"))),
        None => Err(ChatError::bad_request(format!("{name} is required"))),
    }
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

/// `message:send` deserialized straight from the event's bytes (no JSON value tree): the fast
/// path for well-formed sends. Every field has the type the contract asks for; anything else (a
/// numeric-string conversationId, a non-string content, repeated keys...) fails to deserialize and
/// the caller falls back to [`parse_send`](crate::validate::parse_send) on a generic value,
/// which answers exactly as before.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendPayload {
    /// Target conversation.
    pub conversation_id: i64,
    /// Message text.
    #[serde(default)]
    pub content: Option<String>,
    /// text / image / file.
    #[serde(default)]
    pub message_type: Option<chatwire_store::MessageType>,
    /// Attachment URL (image / file).
    #[serde(default)]
    pub attachment_url: Option<String>,
    /// Attachment file name.
    #[serde(default)]
    pub attachment_name: Option<String>,
    /// The client's idempotency key (number or string).
    #[serde(default, deserialize_with = "temp_id_field")]
    pub temp_id: Option<chatwire_store::TempId>,
}

/// `tempId` read directly (number or string, `null` = none) instead of through `TempId`'s
/// untagged derive, which buffers the value first. Same mapping as `TempId`'s derive: an integer
/// that fits `i64` is `Int`, any other number `Float`, a string `Str`.
fn temp_id_field<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<chatwire_store::TempId>, D::Error> {
    use chatwire_store::TempId;
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<TempId>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a number, a string or null")
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(TempId::Int(n)))
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Some(
                i64::try_from(n).map_or(TempId::Float(n as f64), TempId::Int),
            ))
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Self::Value, E> {
            Ok(Some(TempId::Float(n)))
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(Some(TempId::Str(s.to_owned())))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

impl SendPayload {
    /// The fields for [`check_send`](crate::validate::check_send), or `None` when the
    /// tempId or conversationId is invalid (the caller falls back to `parse_send` so the error
    /// and the echoed tempId stay exactly the same).
    pub fn into_fields(
        self,
        limits: &crate::validate::MessageLimits,
    ) -> Option<crate::validate::SendFields<'static>> {
        use std::borrow::Cow;
        if let Some(chatwire_store::TempId::Str(s)) = &self.temp_id
            && (s.chars().count() > limits.max_temp_id_chars || s.contains('\0'))
        {
            return None;
        }
        if self.conversation_id <= 0 {
            return None;
        }
        Some(crate::validate::SendFields {
            conversation_id: self.conversation_id,
            message_type: self
                .message_type
                .unwrap_or(chatwire_store::MessageType::Text),
            content: self.content.map(Cow::Owned),
            attachment_url: self.attachment_url.map(Cow::Owned),
            attachment_name: self.attachment_name.map(Cow::Owned),
            temp_id: self.temp_id,
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

    /// The typed `message:send` path answers exactly like `parse_send` whenever it answers, and
    /// takes the common well-formed sends itself.
    #[test]
    fn typed_send_agrees_with_parse_send() {
        use crate::validate::{MessageLimits, check_send, parse_send};
        use chatwire_protocol::socket::RawEvent;
        let limits = MessageLimits::default().with_max_chars(20);
        let sender = UserKey {
            user_type: UserType::Brand,
            id: 9,
        };
        let cases = [
            (r#"{"conversationId":123,"content":"hi","tempId":5}"#, true),
            (
                r#"{"conversationId":1,"content":"hi","tempId":"t-1"}"#,
                true,
            ),
            (r#"{"conversationId":1,"content":"hi","tempId":1.5}"#, true),
            (
                r#"{"conversationId":1,"content":"hi","tempId":18446744073709551615}"#,
                true,
            ),
            (r#"{"conversationId":1,"content":"   ","tempId":5}"#, true),
            (
                r#"{"conversationId":1,"content":"this is far too long for twenty"}"#,
                true,
            ),
            (r#"{"conversationId":1,"content":"a\u0000b"}"#, true),
            (
                r#"{"conversationId":1,"messageType":"image","attachmentUrl":"ftp://x"}"#,
                true,
            ),
            (
                r#"{"conversationId":1,"messageType":"file","attachmentUrl":"https://x/y","attachmentName":"y"}"#,
                true,
            ),
            (r#"{"conversationId":1,"messageType":"image"}"#, true),
            (r#"{"conversationId":1,"content":null,"tempId":null}"#, true),
            (r#"{"conversationId":"12","content":"hi"}"#, false),
            (r#"{"conversationId":-1,"content":"hi","tempId":3}"#, false),
            (r#"{"conversationId":1,"content":5,"tempId":3}"#, false),
            (
                r#"{"conversationId":1,"messageType":"video","content":"x"}"#,
                false,
            ),
            (r#"{"conversationId":1,"content":"x","tempId":true}"#, false),
            (
                r#"{"conversationId":1,"content":"x","tempId":"0123456789012345678901234567890123456789012345678901234567890123456789"}"#,
                false,
            ),
            (r#"{"conversationId":1,"content":"a","content":"b"}"#, false),
            (r#"{"content":"x","tempId":4}"#, false),
            (r#"[1,"x"]"#, false),
            (r#""x""#, false),
        ];
        for (json, fast) in cases {
            let frame = format!(r#"2/chat,["message:send",{json}]"#);
            let event = RawEvent::decode(frame.into(), 128).unwrap().unwrap();
            let typed = event
                .arg_bytes(0)
                .filter(|b| b.first() == Some(&b'{'))
                .and_then(|_| event.arg::<SendPayload>(0).ok())
                .and_then(|p| p.into_fields(&limits));
            assert_eq!(typed.is_some(), fast, "{json}");
            let expected = parse_send(&parse(json), sender, &limits);
            if let Some(fields) = typed {
                assert_eq!(check_send(fields, sender, &limits), expected, "{json}");
            }
        }
    }
}
