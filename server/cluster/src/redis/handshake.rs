//! `socket.handshake` of a chatwire socket as a Node node's `fetchSockets()` receives it (in
//! REMOTE_FETCH answers): the fields Socket.IO's own server fills, from the
//! [`HandshakeFacts`] each connection keeps.
//!
//! - `time`: the handshake's date as JavaScript's `new Date().toString()` prints it in UTC;
//!   `issued`: the same instant in Unix milliseconds.
//! - `address`: the TCP peer (chatwire reads no `X-Forwarded-For`: behind a proxy this is the
//!   proxy's address); `secure`: false (chatwire serves plain TCP; TLS ends at the proxy);
//!   `xdomain`: the handshake request had an `Origin` header.
//! - `url`, `query`: `/socket.io/?EIO=4&transport=<polling|websocket>` and its parameters.
//!   Other query parameters of the request (the polling cache-buster `t`, a client's own
//!   `query`) are not kept: a string per connection would cost heap on every idle connection.
//! - `headers`: `{}`. Keeping every connection's request headers costs hundreds of bytes per
//!   idle connection, and they may carry credentials (`Authorization`, `Cookie`).
//! - `auth`: `{}`. The CONNECT's `auth` carries the client's token, which never goes over
//!   Redis; the authenticated user is in the socket's `data` (`{userId, userType}`).

use serde_json::{Value as Json, json};

use crate::msg::HandshakeFacts;
use chatwire_store::Civil;

/// The Engine.IO path chatwire serves.
const PATH: &str = "/socket.io/";

/// `Mon Nov 30 2026 15:29:19 GMT+0000 (Coordinated Universal Time)` for `ms` (Unix ms).
pub(super) fn js_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = Civil::from_ms(ms);
    let weekday = usize::try_from(c.weekday)
        .ok()
        .and_then(|d| DAYS.get(d))
        .copied()
        .unwrap_or("Sun");
    let month = usize::try_from(c.month - 1)
        .ok()
        .and_then(|m| MONTHS.get(m))
        .copied()
        .unwrap_or("Jan");
    let sod = c.second_of_day;
    format!(
        "{weekday} {month} {:02} {:04} {:02}:{:02}:{:02} GMT+0000 (Coordinated Universal Time)",
        c.day,
        c.year,
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// `socket.handshake` for a socket whose connection told `facts` (None: unknown, the fields
/// keep their empty values).
pub(super) fn handshake_json(facts: Option<&HandshakeFacts>) -> Json {
    let Some(h) = facts else {
        return json!({
            "headers": {}, "time": "", "address": "", "xdomain": false, "secure": false,
            "issued": 0, "url": PATH, "query": {}, "auth": {},
        });
    };
    let transport = if h.websocket { "websocket" } else { "polling" };
    json!({
        "headers": {},
        "time": js_date(h.issued_ms),
        "address": h.address.to_string(),
        "xdomain": h.xdomain,
        "secure": h.secure,
        "issued": h.issued_ms,
        "url": format!("{PATH}?EIO=4&transport={transport}"),
        "query": {"EIO": "4", "transport": transport},
        "auth": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_like_javascript_in_utc() {
        // new Date(0).toString() with TZ=UTC.
        assert_eq!(
            js_date(0),
            "Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)"
        );
        // 2026-11-30T15:29:19.123Z
        assert_eq!(
            js_date(1_796_052_559_123),
            "Mon Nov 30 2026 15:29:19 GMT+0000 (Coordinated Universal Time)"
        );
        assert_eq!(
            js_date(951_782_400_000),
            "Tue Feb 29 2000 00:00:00 GMT+0000 (Coordinated Universal Time)"
        );
    }

    #[test]
    fn facts_cost_each_connection_32_bytes_and_no_heap() {
        assert_eq!(std::mem::size_of::<HandshakeFacts>(), 32);
    }

    #[test]
    fn facts_fill_the_handshake() {
        let h = HandshakeFacts {
            issued_ms: 1_796_052_559_123,
            address: std::net::Ipv4Addr::LOCALHOST.into(),
            xdomain: true,
            secure: false,
            websocket: true,
        };
        let v = handshake_json(Some(&h));
        assert_eq!(v["address"], "127.0.0.1");
        assert_eq!(v["issued"], 1_796_052_559_123_i64);
        assert_eq!(v["xdomain"], true);
        assert_eq!(v["url"], "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(v["query"], json!({"EIO": "4", "transport": "websocket"}));
        assert_eq!(v["headers"], json!({}));
        assert_eq!(v["auth"], json!({}));
    }
}
