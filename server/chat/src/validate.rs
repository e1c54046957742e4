//! Validation of a `message:send` payload (contract section 3), shared by the socket event and
//! `POST /api/chat/messages` so both accept and refuse exactly the same inputs.
//!
//! [`parse_send`] turns a parsed JSON object into a [`NewMessage`] or an [`InvalidMessage`] that
//! carries the error (`bad_request` / `too_large`) and the tempId to echo (when it was valid).

use std::borrow::Cow;

use simd_json::OwnedValue as Value;
use simd_json::prelude::*;

use chatwire_store::{MessageType, NewMessage, StoreError, TempId, UserKey};

/// Limits applied to a send.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MessageLimits {
    /// Most Unicode code points in `content` (`MAX_MESSAGE_CHARS`, default 4000).
    pub max_chars: usize,
    /// Most chars in `attachmentUrl` (2048).
    pub max_url_chars: usize,
    /// Most chars in `attachmentName` (255).
    pub max_name_chars: usize,
    /// Most chars in a string `tempId` (64).
    pub max_temp_id_chars: usize,
}

impl Default for MessageLimits {
    fn default() -> Self {
        MessageLimits {
            max_chars: 4000,
            max_url_chars: 2048,
            max_name_chars: 255,
            max_temp_id_chars: 64,
        }
    }
}

impl MessageLimits {
    /// Sets [`MessageLimits::max_chars`].
    pub fn with_max_chars(mut self, n: usize) -> Self {
        self.max_chars = n;
        self
    }
}

/// A refused send: the error to answer and the tempId to echo (None when absent or invalid).
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidMessage {
    /// `BadRequest` or `TooLarge`.
    pub error: StoreError,
    /// The send's tempId, when it had a valid one.
    pub temp_id: Option<TempId>,
}

fn bad(msg: &str) -> StoreError {
    StoreError::BadRequest(msg.to_string())
}

/// Reads a `conversationId`: a positive integer given as a JSON number or a decimal string.
pub fn conversation_id(v: Option<&Value>) -> Result<i64, StoreError> {
    let v = v.ok_or_else(|| bad("conversationId is required"))?;
    crate::id::from_value(v).ok_or_else(|| bad("conversationId must be a positive integer"))
}

/// Reads an optional `tempId`: any JSON number, or a string of at most `max_chars` chars.
pub fn temp_id(v: Option<&Value>, max_chars: usize) -> Result<Option<TempId>, StoreError> {
    let Some(v) = v else { return Ok(None) };
    if v.is_null() {
        return Ok(None);
    }
    if let Some(s) = v.as_str() {
        if s.chars().count() > max_chars {
            return Err(bad("tempId is too long"));
        }
        if s.contains('\0') {
            return Err(bad("tempId must not contain NUL characters"));
        }
        return Ok(Some(TempId::Str(s.to_string())));
    }
    if let Some(n) = v.as_i64() {
        return Ok(Some(TempId::Int(n)));
    }
    if let Some(n) = v.as_u64() {
        return Ok(Some(TempId::Float(n as f64)));
    }
    if let Some(f) = v.as_f64() {
        return Ok(Some(TempId::Float(f)));
    }
    Err(bad("tempId must be a number or a string"))
}

fn opt_str<'v>(obj: &'v Value, key: &str) -> Result<Option<&'v str>, StoreError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| StoreError::BadRequest(format!("{key} must be a string"))),
    }
}

fn valid_url(url: &str) -> bool {
    let lower = url
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return false;
    };
    !rest.is_empty()
        && !rest.starts_with('/')
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Validates a `message:send` payload from `sender` (see the contract, section 3).
pub fn parse_send(
    payload: &Value,
    sender: UserKey,
    limits: &MessageLimits,
) -> Result<NewMessage, InvalidMessage> {
    let temp = payload.get("tempId");
    let temp_id = match temp_id(temp, limits.max_temp_id_chars) {
        Ok(t) => t,
        Err(error) => {
            return Err(InvalidMessage {
                error,
                temp_id: None,
            });
        }
    };
    let fail = |error: StoreError| InvalidMessage {
        error,
        temp_id: temp_id.clone(),
    };
    if payload.as_object().is_none() {
        return Err(fail(bad("payload must be an object")));
    }
    let conversation_id = conversation_id(payload.get("conversationId")).map_err(fail)?;
    let message_type = match opt_str(payload, "messageType").map_err(fail)? {
        None => MessageType::Text,
        Some(s) => MessageType::parse(s)
            .ok_or_else(|| fail(bad("messageType must be text, image or file")))?,
    };
    let content = opt_str(payload, "content").map_err(fail)?;
    let attachment_url = opt_str(payload, "attachmentUrl").map_err(fail)?;
    let attachment_name = opt_str(payload, "attachmentName").map_err(fail)?;
    check_send(
        SendFields {
            conversation_id,
            message_type,
            content: content.map(Cow::Borrowed),
            attachment_url: attachment_url.map(Cow::Borrowed),
            attachment_name: attachment_name.map(Cow::Borrowed),
            temp_id,
        },
        sender,
        limits,
    )
}

/// The fields of a send once every one has the right JSON type, and the tempId and
/// conversationId are valid (what [`parse_send`] has checked before [`check_send`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SendFields<'a> {
    /// Positive conversation id.
    pub conversation_id: i64,
    /// `messageType` (text when absent).
    pub message_type: MessageType,
    /// `content`, when present and not null.
    pub content: Option<Cow<'a, str>>,
    /// `attachmentUrl`, when present and not null.
    pub attachment_url: Option<Cow<'a, str>>,
    /// `attachmentName`, when present and not null.
    pub attachment_name: Option<Cow<'a, str>>,
    /// A valid tempId.
    pub temp_id: Option<TempId>,
}

/// The rest of [`parse_send`]'s checks (content required / length / NUL / blank, attachment URL
/// and name), in the same order with the same errors; for callers that deserialized the payload
/// into typed fields themselves.
pub fn check_send(
    fields: SendFields<'_>,
    sender: UserKey,
    limits: &MessageLimits,
) -> Result<NewMessage, InvalidMessage> {
    let SendFields {
        conversation_id,
        message_type,
        content,
        attachment_url,
        attachment_name,
        temp_id,
    } = fields;
    let fail = |error: StoreError| InvalidMessage {
        error,
        temp_id: temp_id.clone(),
    };
    let content = match (content, message_type) {
        (None, MessageType::Text) => return Err(fail(bad("content is required"))),
        (None, _) => Cow::Borrowed(""),
        (Some(c), _) => c,
    };
    if content.chars().count() > limits.max_chars {
        return Err(fail(StoreError::TooLarge(format!(
            "content is longer than {} characters",
            limits.max_chars
        ))));
    }
    // PostgreSQL text cannot hold U+0000: refuse it here rather than fail a whole batch.
    if content.contains('\0') || attachment_name.as_deref().is_some_and(|n| n.contains('\0')) {
        return Err(fail(bad("text must not contain NUL characters")));
    }
    if message_type == MessageType::Text && content.trim().is_empty() {
        return Err(fail(bad("content must not be empty")));
    }
    if let Some(url) = attachment_url.as_deref() {
        if url.chars().count() > limits.max_url_chars || !valid_url(url) {
            return Err(fail(bad(
                "attachmentUrl must be an http or https URL of at most 2048 characters",
            )));
        }
    } else if message_type != MessageType::Text {
        return Err(fail(bad(
            "attachmentUrl is required for image and file messages",
        )));
    }
    if attachment_name
        .as_deref()
        .is_some_and(|n| n.chars().count() > limits.max_name_chars)
    {
        return Err(fail(bad("attachmentName is too long")));
    }
    Ok(NewMessage {
        conversation_id,
        sender,
        message_type,
        content: content.into_owned(),
        attachment_url: attachment_url.map(Cow::into_owned),
        attachment_name: attachment_name.map(Cow::into_owned),
        temp_id,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chatwire_store::UserType;

    fn parse(json: &str) -> Result<NewMessage, InvalidMessage> {
        let mut buf = json.as_bytes().to_vec();
        let v: Value = simd_json::to_owned_value(&mut buf).unwrap();
        parse_send(
            &v,
            UserKey::new(UserType::Brand, 1),
            &MessageLimits::default(),
        )
    }

    fn code(json: &str) -> &'static str {
        parse(json).unwrap_err().error.code()
    }

    #[test]
    fn accepts_the_contract_shapes() {
        let m = parse(r#"{"conversationId":"12","content":"hi","tempId":5}"#).unwrap();
        assert_eq!(m.conversation_id, 12);
        assert_eq!(m.message_type, MessageType::Text);
        assert_eq!(m.temp_id, Some(TempId::Int(5)));
        let m = parse(r#"{"conversationId":3,"content":"","messageType":"image","attachmentUrl":"https://x.io/a.png","tempId":"5"}"#)
            .unwrap();
        assert_eq!(m.temp_id, Some(TempId::Str("5".into())));
        assert_ne!(TempId::Int(5).key(), TempId::Str("5".into()).key());
        let m = parse(r#"{"conversationId":3,"content":"x","tempId":1.5}"#).unwrap();
        assert_eq!(m.temp_id, Some(TempId::Float(1.5)));
        let four_thousand = "é".repeat(4000);
        assert!(
            parse(&format!(
                r#"{{"conversationId":3,"content":"{four_thousand}"}}"#
            ))
            .is_ok()
        );
    }

    #[test]
    fn refuses_bad_sends_with_the_contract_codes() {
        assert_eq!(
            code(r#"{"conversationId":3,"content":"   \n"}"#),
            "bad_request"
        );
        assert_eq!(code(r#"{"conversationId":3,"content":""}"#), "bad_request");
        assert_eq!(code(r#"{"conversationId":3}"#), "bad_request");
        assert_eq!(code(r#"{"content":"x"}"#), "bad_request");
        assert_eq!(
            code(r#"{"conversationId":"12a","content":"x"}"#),
            "bad_request"
        );
        assert_eq!(
            code(r#"{"conversationId":-1,"content":"x"}"#),
            "bad_request"
        );
        assert_eq!(
            code(r#"{"conversationId":1,"content":"x","messageType":"video"}"#),
            "bad_request"
        );
        assert_eq!(
            code(r#"{"conversationId":1,"content":"","messageType":"file"}"#),
            "bad_request"
        );
        assert_eq!(
            code(r#"{"conversationId":1,"messageType":"file","attachmentUrl":"ftp://x/y"}"#),
            "bad_request"
        );
        assert_eq!(code(r#"{"conversationId":1,"content":5}"#), "bad_request");
        let long = "a".repeat(4001);
        assert_eq!(
            code(&format!(r#"{{"conversationId":1,"content":"{long}"}}"#)),
            "too_large"
        );
        let url = format!("https://x.io/{}", "a".repeat(2040));
        assert_eq!(
            code(&format!(
                r#"{{"conversationId":1,"messageType":"image","attachmentUrl":"{url}"}}"#
            )),
            "bad_request"
        );
        let long_temp = "t".repeat(65);
        let err = parse(&format!(
            r#"{{"conversationId":1,"content":"x","tempId":"{long_temp}"}}"#
        ))
        .unwrap_err();
        assert_eq!(err.error.code(), "bad_request");
        assert_eq!(err.temp_id, None);
        assert_eq!(
            code(r#"{"conversationId":1,"content":"x","tempId":{}}"#),
            "bad_request"
        );
        assert_eq!(
            code(r#"{"conversationId":1,"content":"a\u0000b"}"#),
            "bad_request"
        );
        assert_eq!(
            code(r#"{"conversationId":1,"content":"x","tempId":"\u0000"}"#),
            "bad_request"
        );
    }

    #[test]
    fn errors_echo_the_temp_id() {
        let err = parse(r#"{"conversationId":1,"content":" ","tempId":"abc"}"#).unwrap_err();
        assert_eq!(err.temp_id, Some(TempId::Str("abc".into())));
    }
}
