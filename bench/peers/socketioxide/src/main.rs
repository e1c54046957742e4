//! Benchmark peer on socketioxide: the load scenario's part of the chat contract, in memory.
//!
//! Namespace `/chat`, dev tokens `auth.token = "<userId>:<userType>"`, events `conversation:join`,
//! `message:send`, `typing:start` / `typing:stop`, `message:read`, with the contract's payloads.
//! No participant checks and no storage: it exists so `scripts/bench.sh` can put the same load on
//! chatwire and on this server and compare CPU per delivery and memory per connection.
//!
//! Usage: `chatwire-peer-socketioxide [--port N]` (or `PORT`; default 3001).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::serve::ListenerExt;
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;

/// Message ids, increasing across the whole process.
static NEXT_MESSAGE_ID: AtomicI64 = AtomicI64::new(1);
/// The newest id handed out (what `message:read` without `messageId` reads up to).
static LAST_MESSAGE_ID: AtomicI64 = AtomicI64::new(0);

/// Who a socket is, from its dev token.
#[derive(Clone, Copy, Debug)]
struct Identity {
    /// Positive user id.
    id: i64,
    /// `true` for `brand`, `false` for `influencer`.
    brand: bool,
}

impl Identity {
    /// Parses `<userId>:<userType>` (optionally prefixed by `Bearer `).
    fn from_token(token: &str) -> Option<Self> {
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        let (id, kind) = token.split_once(':')?;
        let id: i64 = id.parse().ok().filter(|id| *id > 0)?;
        let brand = match kind {
            "brand" => true,
            "influencer" => false,
            _ => return None,
        };
        Some(Self { id, brand })
    }

    /// The contract's `userType` string.
    fn kind(self) -> &'static str {
        if self.brand { "brand" } else { "influencer" }
    }
}

/// The CONNECT auth payload.
#[derive(Deserialize)]
struct Auth {
    /// Dev token.
    token: String,
}

/// Payloads that only carry a conversation id (join, typing).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConversationRef {
    /// Number or numeric string.
    conversation_id: Value,
}

/// `message:send` payload (the fields the load scenario uses).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Send {
    /// Number or numeric string.
    conversation_id: Value,
    /// Message text.
    content: String,
    /// Echoed back with its JSON type.
    #[serde(default)]
    temp_id: Value,
}

/// `message:read` payload.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Read {
    /// Number or numeric string.
    conversation_id: Value,
    /// Up to which message; absent means the newest.
    #[serde(default)]
    message_id: Option<i64>,
}

/// Reads a conversation id given as a number or a numeric string.
fn conversation_id(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Formats Unix milliseconds as ISO-8601 with milliseconds and `Z`.
fn iso_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Rejects a namespace CONNECT without a valid dev token.
async fn authenticate(TryData(auth): TryData<Auth>) -> Result<(), &'static str> {
    match auth {
        Ok(auth) if Identity::from_token(&auth.token).is_some() => Ok(()),
        _ => Err("unauthorized"),
    }
}

/// Answers on the reply event and, when the client asked for one, the ack.
fn reply(s: &SocketRef, ack: AckSender, event: &str, payload: &Value) {
    let _ = s.emit(event, payload);
    let _ = ack.send(payload);
}

/// A connected `/chat` socket: registers the scenario's event handlers.
async fn on_connect(s: SocketRef, TryData(auth): TryData<Auth>) {
    let Some(me) = auth.ok().and_then(|a| Identity::from_token(&a.token)) else {
        s.disconnect().ok();
        return;
    };
    let _ = s.emit(
        "connection:success",
        &json!({"userId": me.id, "userType": me.kind(), "socketId": s.id.to_string()}),
    );

    s.on(
        "conversation:join",
        async |s: SocketRef, TryData(p): TryData<ConversationRef>, ack: AckSender| {
            let Some(id) = p.ok().and_then(|p| conversation_id(&p.conversation_id)) else {
                let err = json!({"conversationId": null, "error": "bad_request", "message": "conversationId"});
                return reply(&s, ack, "conversation:error", &err);
            };
            let room = format!("conversation:{id}");
            s.join(room.clone());
            reply(&s, ack, "conversation:joined", &json!({"conversationId": id, "room": room}));
        },
    );

    s.on(
        "message:send",
        async move |s: SocketRef, TryData(p): TryData<Send>, ack: AckSender| {
            let p = match p {
                Ok(p) if !p.content.trim().is_empty() => p,
                _ => {
                    let err = json!({"error": "bad_request", "message": "invalid message", "tempId": null});
                    return reply(&s, ack, "message:error", &err);
                }
            };
            let Some(cid) = conversation_id(&p.conversation_id) else {
                let err = json!({"error": "bad_request", "message": "conversationId", "tempId": p.temp_id});
                return reply(&s, ack, "message:error", &err);
            };
            let id = NEXT_MESSAGE_ID.fetch_add(1, Ordering::Relaxed);
            LAST_MESSAGE_ID.fetch_max(id, Ordering::Relaxed);
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            let message = json!({
                "id": id, "conversationId": cid,
                "sender": {"id": me.id, "username": format!("{}_{}", me.kind(), me.id),
                           "firstName": null, "lastName": null, "profileImage": null},
                "senderType": me.kind(), "messageType": "text", "content": p.content,
                "isRead": false, "createdAt": iso_millis(now_ms),
                "attachmentUrl": null, "attachmentName": null,
            });
            reply(&s, ack, "message:sent", &json!({"tempId": p.temp_id, "message": message}));
            let _ = s.to(format!("conversation:{cid}")).emit("message:new", &message).await;
        },
    );

    for event in ["typing:start", "typing:stop"] {
        s.on(
            event,
            async move |s: SocketRef, Data(p): Data<ConversationRef>| {
                let Some(cid) = conversation_id(&p.conversation_id) else { return };
                let payload = json!({"conversationId": cid, "user": {"userId": me.id, "userType": me.kind()}});
                let _ = s.to(format!("conversation:{cid}")).emit(event, &payload).await;
            },
        );
    }

    s.on(
        "message:read",
        async move |s: SocketRef, TryData(p): TryData<Read>, ack: AckSender| {
            let Some((cid, mid)) = p.ok().and_then(|p| {
                let cid = conversation_id(&p.conversation_id)?;
                Some((cid, p.message_id.unwrap_or_else(|| LAST_MESSAGE_ID.load(Ordering::Relaxed))))
            }) else {
                let err = json!({"conversationId": null, "error": "bad_request", "message": "conversationId"});
                return reply(&s, ack, "conversation:error", &err);
            };
            reply(&s, ack, "message:read:success", &json!({"conversationId": cid, "messageId": mid}));
            let payload = json!({"conversationId": cid, "messageId": mid,
                                 "readBy": {"userId": me.id, "userType": me.kind()}});
            let _ = s.to(format!("conversation:{cid}")).emit("message:read", &payload).await;
        },
    );
}

/// `--port N`, else `PORT`, else 3001.
fn port() -> u16 {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--port" {
            if let Some(p) = args.next().and_then(|p| p.parse().ok()) {
                return p;
            }
        }
    }
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001)
}

fn main() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (layer, io) = SocketIo::new_layer();
        io.ns("/", async |_: SocketRef| {});
        io.ns("/chat", on_connect.with(authenticate));
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(async || "ok"))
            .layer(layer);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port())).await?;
        eprintln!("socketioxide peer listening on {}", listener.local_addr()?);
        // Small frames both ways: no Nagle delay (as Node's http server and chatwire do).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await
    })
}
