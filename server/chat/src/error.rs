//! The chat layer's error: a contract error code (section 3) plus a human message. Every handler
//! maps its failures to one of these; the event family decides which reply event carries it.

use chatwire_store::StoreError;

/// Contract error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The payload is malformed or a field is invalid: fix the request.
    BadRequest,
    /// No valid identity: reconnect with a token.
    Unauthorized,
    /// Not a participant of the conversation.
    Forbidden,
    /// No such conversation or message.
    NotFound,
    /// Content over `MAX_MESSAGE_CHARS`.
    TooLarge,
    /// Over the per-socket rate limit: slow down and retry.
    RateLimited,
    /// Storage down or the write queue full: retry later.
    Unavailable,
}

impl Code {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::TooLarge => "too_large",
            Code::RateLimited => "rate_limited",
            Code::Unavailable => "unavailable",
        }
    }
}

/// A failed chat request: what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ChatError {
    /// Contract code.
    pub code: Code,
    /// Human-readable reason.
    pub message: String,
}

impl ChatError {
    /// A new error.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `bad_request` with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, message)
    }
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ChatError::new(Code::NotFound, "not found"),
            StoreError::Forbidden => ChatError::new(Code::Forbidden, "not a participant"),
            StoreError::BadRequest(m) => ChatError::new(Code::BadRequest, m),
            StoreError::TooLarge(m) => ChatError::new(Code::TooLarge, m),
            other => {
                tracing::warn!(error = %other, "storage error");
                ChatError::new(Code::Unavailable, "storage unavailable, retry later")
            }
        }
    }
}
