//! The query string of every Engine.IO request, checked like the reference server's `verify()`:
//! `transport` first (code 0), then `sid` (code 1) for requests of an existing session, or `EIO=4`
//! (code 5) for a new handshake. The method and transport-mismatch checks (codes 2 and 3) need
//! server state and are offered as separate methods.

use crate::engine::sid::Sid;
pub use crate::error::HandshakeError;

/// The two Engine.IO transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// HTTP long-polling (GET to receive, POST to send).
    Polling,
    /// WebSocket.
    Websocket,
}

impl Transport {
    /// The query-string name.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Polling => "polling",
            Transport::Websocket => "websocket",
        }
    }
}

/// A validated request query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeQuery {
    /// Transport this request uses.
    pub transport: Transport,
    /// Session this request belongs to; `None` starts a new session.
    pub sid: Option<Sid>,
}

impl HandshakeQuery {
    /// Parses and checks `query` (with or without the leading `?`).
    pub fn parse(query: &str) -> Result<HandshakeQuery, HandshakeError> {
        let query = query.strip_prefix('?').unwrap_or(query);
        let (mut eio, mut transport, mut sid) = (None, None, None);
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "EIO" => &mut eio,
                "transport" => &mut transport,
                "sid" => &mut sid,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        let transport = match transport {
            Some("polling") => Transport::Polling,
            Some("websocket") => Transport::Websocket,
            _ => return Err(HandshakeError::TransportUnknown),
        };
        match sid {
            Some(sid) => {
                let sid = Sid::parse(sid).ok_or(HandshakeError::SessionIdUnknown)?;
                Ok(HandshakeQuery {
                    transport,
                    sid: Some(sid),
                })
            }
            None if eio == Some("4") => Ok(HandshakeQuery {
                transport,
                sid: None,
            }),
            None => Err(HandshakeError::UnsupportedProtocolVersion),
        }
    }

    /// A new session (no `sid`) must be opened with GET (code 2 otherwise).
    pub fn check_method(&self, method: &str) -> Result<(), HandshakeError> {
        if self.sid.is_none() && method != "GET" {
            return Err(HandshakeError::BadHandshakeMethod);
        }
        Ok(())
    }

    /// A request for an existing session must use the session's transport, except a websocket
    /// joining a polling session to upgrade it (code 3 otherwise).
    pub fn check_transport(&self, session: Transport) -> Result<(), HandshakeError> {
        match (session, self.transport) {
            (a, b) if a == b => Ok(()),
            (Transport::Polling, Transport::Websocket) => Ok(()),
            _ => Err(HandshakeError::BadRequest),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn documented_queries() {
        let q = HandshakeQuery::parse("EIO=4&transport=polling&t=N8hyd6w").unwrap();
        assert_eq!(
            q,
            HandshakeQuery {
                transport: Transport::Polling,
                sid: None
            }
        );
        let q = HandshakeQuery::parse("?EIO=4&transport=websocket").unwrap();
        assert_eq!(q.transport, Transport::Websocket);
        let sid = Sid::new([7; 12], 1);
        let q = HandshakeQuery::parse(&format!("EIO=4&transport=websocket&sid={sid}")).unwrap();
        assert_eq!(q.sid, Some(sid));
    }

    #[test]
    fn every_reference_error_code() {
        let cases = [
            ("EIO=4", HandshakeError::TransportUnknown),
            ("EIO=4&transport=flash", HandshakeError::TransportUnknown),
            (
                "EIO=4&transport=polling&sid=nope",
                HandshakeError::SessionIdUnknown,
            ),
            (
                "EIO=3&transport=polling",
                HandshakeError::UnsupportedProtocolVersion,
            ),
            (
                "transport=polling",
                HandshakeError::UnsupportedProtocolVersion,
            ),
        ];
        for (query, err) in cases {
            assert_eq!(HandshakeQuery::parse(query), Err(err), "{query}");
        }
        let new = HandshakeQuery::parse("EIO=4&transport=polling").unwrap();
        assert_eq!(
            new.check_method("POST"),
            Err(HandshakeError::BadHandshakeMethod)
        );
        assert_eq!(new.check_method("GET"), Ok(()));
        let ws = HandshakeQuery {
            transport: Transport::Polling,
            sid: Some(Sid::new([1; 12], 0)),
        };
        assert_eq!(
            ws.check_transport(Transport::Websocket),
            Err(HandshakeError::BadRequest)
        );
        let up = HandshakeQuery {
            transport: Transport::Websocket,
            ..ws
        };
        assert_eq!(up.check_transport(Transport::Polling), Ok(()));
    }

    #[test]
    fn error_bodies_match_the_reference_server() {
        let all = [
            (
                HandshakeError::TransportUnknown,
                r#"{"code":0,"message":"Transport unknown"}"#,
            ),
            (
                HandshakeError::SessionIdUnknown,
                r#"{"code":1,"message":"Session ID unknown"}"#,
            ),
            (
                HandshakeError::BadHandshakeMethod,
                r#"{"code":2,"message":"Bad handshake method"}"#,
            ),
            (
                HandshakeError::BadRequest,
                r#"{"code":3,"message":"Bad request"}"#,
            ),
            (
                HandshakeError::Forbidden,
                r#"{"code":4,"message":"Forbidden"}"#,
            ),
            (
                HandshakeError::UnsupportedProtocolVersion,
                r#"{"code":5,"message":"Unsupported protocol version"}"#,
            ),
        ];
        for (err, json) in all {
            assert_eq!(err.to_json(), json);
            assert_eq!(err.to_string(), err.message());
        }
        assert_eq!(HandshakeError::Forbidden.http_status(), 403);
        assert_eq!(HandshakeError::BadRequest.http_status(), 400);
    }
}
