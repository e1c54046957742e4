//! Every REST endpoint and error status, through `rest::handle` directly, on each backend
//! (memory, SQLite file, a fresh PostgreSQL database). Posted messages go through a real
//! BatchWriter whose sink answers the HTTP waiter and records what would be delivered live.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/pg.rs"]
mod pg;

use std::sync::{Arc, Mutex};

use chatwire::app::commit::{Committer, ReplyTo, Route};
use chatwire::rest::{LiveEvents, RestContext, RestLimits, RestResponse, handle};
use chatwire::store::batch::{BatchConfig, BatchWriter, CommitSink};
use chatwire::store::{
    AnyStore, MessageType, NewMessage, Store, StoreError, Stored, UserKey, UserType,
};
use hyper::Method;
use serde_json::{Value, json};

#[derive(Default)]
struct Recorder {
    /// Message ids committed (what the server would deliver live), in sink order.
    delivered: Mutex<Vec<i64>>,
    /// `(conversation, message, reader)` read broadcasts.
    reads: Mutex<Vec<(i64, i64, UserKey)>>,
}

struct Sink(Arc<Recorder>);

impl CommitSink for Sink {
    type Reply = Route;

    fn committed(&self, batch: Vec<(Stored, Route)>) {
        for (stored, route) in batch {
            self.0.delivered.lock().unwrap().push(stored.message.id);
            if let ReplyTo::Http(tx) = route.reply {
                let _ = tx.send(Ok(stored));
            }
        }
    }
    fn failed(&self, batch: Vec<(NewMessage, Route)>, error: StoreError) {
        for (_, route) in batch {
            if let ReplyTo::Http(tx) = route.reply {
                let _ = tx.send(Err(error.clone()));
            }
        }
    }
}

struct Live(Arc<Recorder>);

impl LiveEvents for Live {
    fn read(&self, conversation_id: i64, message_id: i64, reader: UserKey) {
        self.0
            .reads
            .lock()
            .unwrap()
            .push((conversation_id, message_id, reader));
    }
}

fn brand(id: i64) -> UserKey {
    UserKey::new(UserType::Brand, id)
}
fn infl(id: i64) -> UserKey {
    UserKey::new(UserType::Influencer, id)
}

struct Api {
    ctx: RestContext,
    rec: Arc<Recorder>,
}

impl Api {
    async fn new(url: &str) -> Api {
        let store = Arc::new(AnyStore::connect(url, true).await.unwrap());
        let rec = Arc::new(Recorder::default());
        let writer = Committer::Writer(BatchWriter::spawn(
            store.clone(),
            BatchConfig::default(),
            Sink(rec.clone()),
        ));
        let limits = RestLimits::default()
            .with_max_participants(5)
            .with_max_body_bytes(16 * 1024);
        let ctx = RestContext {
            store,
            writer,
            live: Arc::new(Live(rec.clone())),
            limits,
        };
        Api { ctx, rec }
    }

    async fn call(&self, user: UserKey, method: Method, path: &str, body: Value) -> (u16, Value) {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let body = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        let RestResponse { status, body } =
            handle(&self.ctx, user, &method, path, query, &body).await;
        let v = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        (status, v)
    }

    async fn raw(&self, user: UserKey, method: Method, path: &str, body: &[u8]) -> (u16, Value) {
        let r = handle(&self.ctx, user, &method, path, None, body).await;
        (r.status, serde_json::from_slice(&r.body).unwrap())
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

async fn conversations(api: &Api) -> i64 {
    let (a, b) = (brand(1), infl(1));
    let body = json!({"participantId": 1, "participantType": "influencer"});
    let (s, c) = api
        .call(a, Method::POST, "/api/chat/conversations", body.clone())
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["type"], "direct");
    assert_eq!(c["participants"].as_array().unwrap().len(), 2);
    assert_eq!(c["lastMessage"], Value::Null);
    assert_eq!(c["unreadCount"], 0);
    assert!(c["updatedAt"].as_str().unwrap().ends_with('Z'));
    let id = c["id"].as_i64().unwrap();
    // Existing: 200 with the same conversation, from either side, id as a string too.
    let (s, again) = api
        .call(
            b,
            Method::POST,
            "/api/chat/conversations",
            json!({"participantId": "1", "participantType": "brand"}),
        )
        .await;
    assert_eq!((s, again["id"].as_i64()), (200, Some(id)));
    // Unknown user is created with the default profile.
    let (s, c2) = api
        .call(
            a,
            Method::POST,
            "/api/chat/conversations",
            json!({"participantId": 77, "participantType": "influencer"}),
        )
        .await;
    assert_eq!(s, 201);
    let names: Vec<&str> = c2["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["username"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"influencer_77"), "{names:?}");
    // Errors.
    let (s, e) = api
        .call(
            a,
            Method::POST,
            "/api/chat/conversations",
            json!({"participantId": 1, "participantType": "brand"}),
        )
        .await;
    assert_eq!((s, code(&e)), (400, "bad_request"), "a 1:1 with yourself");
    let (s, e) = api
        .call(
            a,
            Method::POST,
            "/api/chat/conversations",
            json!({"participantId": 2, "participantType": "admin"}),
        )
        .await;
    assert_eq!((s, code(&e)), (400, "bad_request"));
    let (s, e) = api
        .raw(a, Method::POST, "/api/chat/conversations", b"{not json")
        .await;
    assert_eq!((s, code(&e)), (400, "bad_request"));
    let big = vec![b' '; 17 * 1024];
    let (s, e) = api
        .raw(a, Method::POST, "/api/chat/conversations", &big)
        .await;
    assert_eq!((s, code(&e)), (413, "too_large"));
    // Groups: caller included, at most MAX_PARTICIPANTS (5 here).
    let members: Vec<Value> = (1..=4)
        .map(|i| json!({"userId": i, "userType": "influencer"}))
        .collect();
    let (s, g) = api
        .call(
            a,
            Method::POST,
            "/api/chat/conversations",
            json!({"participants": members, "title": "Team"}),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    assert_eq!(
        (g["type"].as_str(), g["title"].as_str()),
        (Some("group"), Some("Team"))
    );
    assert_eq!(g["participants"].as_array().unwrap().len(), 5);
    let members: Vec<Value> = (1..=5)
        .map(|i| json!({"userId": i, "userType": "influencer"}))
        .collect();
    let (s, e) = api
        .call(
            a,
            Method::POST,
            "/api/chat/conversations",
            json!({"participants": members}),
        )
        .await;
    assert_eq!((s, code(&e)), (413, "too_large"));
    id
}

async fn messages(api: &Api, cid: i64) {
    let (a, b, outsider) = (brand(1), infl(1), infl(50));
    let send = |user: UserKey, body: Value| async move {
        api.call(user, Method::POST, "/api/chat/messages", body)
            .await
    };
    let (s, m) = send(
        a,
        json!({"conversationId": cid, "content": "Hello REST", "tempId": "t-1"}),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["content"], "Hello REST");
    assert_eq!(m["senderType"], "brand");
    assert_eq!(m["sender"]["username"], "brand_1");
    assert_eq!(m["isRead"], false);
    assert_eq!(m["messageType"], "text");
    let first = m["id"].as_i64().unwrap();
    assert!(
        api.rec.delivered.lock().unwrap().contains(&first),
        "delivered live through the writer's sink"
    );
    // Retry with the same tempId: 200 with the first message, nothing new stored.
    let (s, dup) = send(
        a,
        json!({"conversationId": cid.to_string(), "content": "changed", "tempId": "t-1"}),
    )
    .await;
    assert_eq!(
        (s, dup["id"].as_i64(), dup["content"].as_str()),
        (200, Some(first), Some("Hello REST"))
    );
    let (s, _) = send(b, json!({"conversationId": cid, "content": "hello back"})).await;
    assert_eq!(s, 201);
    let (s, img) = send(
        b,
        json!({"conversationId": cid, "content": "", "messageType": "image",
               "attachmentUrl": "https://cdn.example/p.png", "attachmentName": "p.png"}),
    )
    .await;
    assert_eq!(s, 201, "{img}");
    assert_eq!(img["attachmentUrl"], "https://cdn.example/p.png");
    // Validation exactly as message:send.
    for (body, status, c) in [
        (
            json!({"conversationId": cid, "content": "  \t"}),
            400,
            "bad_request",
        ),
        (
            json!({"conversationId": cid, "content": "x".repeat(4001)}),
            413,
            "too_large",
        ),
        (
            json!({"conversationId": cid, "content": "x", "messageType": "video"}),
            400,
            "bad_request",
        ),
        (
            json!({"conversationId": cid, "messageType": "file"}),
            400,
            "bad_request",
        ),
        (
            json!({"conversationId": "abc", "content": "x"}),
            400,
            "bad_request",
        ),
        (
            json!({"conversationId": cid, "content": "x", "tempId": "t".repeat(65)}),
            400,
            "bad_request",
        ),
        (
            json!({"conversationId": 999_999, "content": "x"}),
            404,
            "not_found",
        ),
    ] {
        let (s, e) = send(a, body.clone()).await;
        assert_eq!((s, code(&e)), (status, c), "{body}");
    }
    let (s, e) = send(
        outsider,
        json!({"conversationId": cid, "content": "let me in"}),
    )
    .await;
    assert_eq!((s, code(&e)), (403, "forbidden"));

    // History: newest first, limit, cursor, search.
    let path = format!("/api/chat/conversations/{cid}/messages");
    let (s, h) = api
        .call(a, Method::GET, &format!("{path}?limit=2"), Value::Null)
        .await;
    assert_eq!(s, 200);
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["messageType"], "image");
    let cursor = h["nextCursor"].as_i64().unwrap();
    let (_, h2) = api
        .call(
            a,
            Method::GET,
            &format!("{path}?limit=2&before={cursor}"),
            Value::Null,
        )
        .await;
    assert_eq!(h2["messages"].as_array().unwrap().len(), 1);
    assert_eq!(h2["messages"][0]["id"].as_i64(), Some(first));
    assert_eq!(h2["nextCursor"], Value::Null);
    let (_, found) = api
        .call(
            a,
            Method::GET,
            &format!("{path}?q=hello%20REST"),
            Value::Null,
        )
        .await;
    let found = found["messages"].as_array().unwrap();
    assert_eq!(found.len(), 1, "case-insensitive search");
    assert_eq!(found[0]["id"].as_i64(), Some(first));
    let (s, e) = api.call(outsider, Method::GET, &path, Value::Null).await;
    assert_eq!((s, code(&e)), (403, "forbidden"));
    let (s, e) = api
        .call(
            a,
            Method::GET,
            "/api/chat/conversations/999999/messages",
            Value::Null,
        )
        .await;
    assert_eq!((s, code(&e)), (404, "not_found"));
    let (s, e) = api
        .call(
            a,
            Method::GET,
            "/api/chat/conversations/x1/messages",
            Value::Null,
        )
        .await;
    assert_eq!((s, code(&e)), (400, "bad_request"));
    let (s, e) = api
        .call(a, Method::GET, &format!("{path}?limit=ten"), Value::Null)
        .await;
    assert_eq!((s, code(&e)), (400, "bad_request"));

    // ?limit is clamped to 100.
    let bulk: Vec<NewMessage> = (0..120)
        .map(|i| NewMessage {
            conversation_id: cid,
            sender: b,
            message_type: MessageType::Text,
            content: format!("bulk {i}"),
            attachment_url: None,
            attachment_name: None,
            temp_id: None,
        })
        .collect();
    api.ctx.store.insert_batch(&bulk).await.unwrap();
    let (_, h) = api
        .call(a, Method::GET, &format!("{path}?limit=500"), Value::Null)
        .await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 100);
    let (_, h) = api.call(a, Method::GET, &path, Value::Null).await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 50);

    // Unread counts: never your own messages.
    let (s, u) = api
        .call(a, Method::GET, "/api/chat/unread-count", Value::Null)
        .await;
    assert_eq!(s, 200);
    assert_eq!(u["total"], 122, "{u}");
    assert_eq!(u["conversations"][0]["conversationId"].as_i64(), Some(cid));
    let (_, u) = api
        .call(b, Method::GET, "/api/chat/unread-count", Value::Null)
        .await;
    assert_eq!(u["total"], 1);

    // Read pointer: explicit id, then "up to the newest" with no body.
    let read_path = format!("/api/chat/conversations/{cid}/read");
    let (s, r) = api
        .call(b, Method::PUT, &read_path, json!({"messageId": first}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(r, json!({"conversationId": cid, "messageId": first}));
    assert_eq!(
        api.rec.reads.lock().unwrap().last().copied(),
        Some((cid, first, b))
    );
    let (_, h) = api
        .call(
            a,
            Method::GET,
            &format!("{path}?q=hello%20rest"),
            Value::Null,
        )
        .await;
    assert_eq!(
        h["messages"][0]["isRead"], true,
        "isRead once the other participant read it"
    );
    let (s, r) = api.call(a, Method::PUT, &read_path, Value::Null).await;
    assert_eq!(s, 200);
    let newest = r["messageId"].as_i64().unwrap();
    assert!(newest > first);
    let (_, u) = api
        .call(a, Method::GET, "/api/chat/unread-count", Value::Null)
        .await;
    assert_eq!(u["total"], 0);
    let (s, e) = api
        .call(outsider, Method::PUT, &read_path, Value::Null)
        .await;
    assert_eq!((s, code(&e)), (403, "forbidden"));
    let (s, e) = api
        .call(
            a,
            Method::PUT,
            "/api/chat/conversations/999999/read",
            Value::Null,
        )
        .await;
    assert_eq!((s, code(&e)), (404, "not_found"));
    let (s, e) = api
        .call(a, Method::PUT, &read_path, json!({"messageId": "nope"}))
        .await;
    assert_eq!((s, code(&e)), (400, "bad_request"));
}

async fn listing_and_hiding(api: &Api, cid: i64) {
    let a = brand(1);
    let (s, l) = api
        .call(
            a,
            Method::GET,
            "/api/chat/conversations?limit=1",
            Value::Null,
        )
        .await;
    assert_eq!(s, 200);
    let convs = l["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0]["id"].as_i64(), Some(cid), "latest activity first");
    assert_eq!(convs[0]["lastMessage"]["content"], "bulk 119");
    let mut ids = vec![cid];
    let mut cursor = l["nextCursor"].as_str().map(str::to_string);
    while let Some(c) = cursor {
        let (_, page) = api
            .call(
                a,
                Method::GET,
                &format!("/api/chat/conversations?limit=1&before={c}"),
                Value::Null,
            )
            .await;
        ids.extend(
            page["conversations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_i64().unwrap()),
        );
        cursor = page["nextCursor"].as_str().map(str::to_string);
    }
    assert_eq!(
        ids.len(),
        3,
        "1:1 with influencer 1, 1:1 with influencer 77, the group: {ids:?}"
    );
    let (s, e) = api
        .call(
            a,
            Method::GET,
            "/api/chat/conversations?before=garbage",
            Value::Null,
        )
        .await;
    assert_eq!((s, code(&e)), (400, "bad_request"));

    let (s, body) = api
        .call(
            a,
            Method::DELETE,
            &format!("/api/chat/conversations/{cid}"),
            Value::Null,
        )
        .await;
    assert_eq!((s, body), (204, Value::Null));
    let (_, l) = api
        .call(a, Method::GET, "/api/chat/conversations", Value::Null)
        .await;
    assert!(
        l["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"].as_i64() != Some(cid))
    );
    let (s, _) = api
        .call(
            infl(1),
            Method::POST,
            "/api/chat/messages",
            json!({"conversationId": cid, "content": "come back"}),
        )
        .await;
    assert_eq!(s, 201);
    let (_, l) = api
        .call(a, Method::GET, "/api/chat/conversations", Value::Null)
        .await;
    assert_eq!(
        l["conversations"][0]["id"].as_i64(),
        Some(cid),
        "a new message brings it back"
    );
    let (s, e) = api
        .call(
            infl(50),
            Method::DELETE,
            &format!("/api/chat/conversations/{cid}"),
            Value::Null,
        )
        .await;
    assert_eq!((s, code(&e)), (403, "forbidden"));
    let (s, e) = api
        .call(
            a,
            Method::DELETE,
            "/api/chat/conversations/999999",
            Value::Null,
        )
        .await;
    assert_eq!((s, code(&e)), (404, "not_found"));

    let (s, e) = api
        .call(a, Method::GET, "/api/chat/nothing-here", Value::Null)
        .await;
    assert_eq!((s, code(&e)), (404, "not_found"));
    let (s, _) = api
        .call(a, Method::PATCH, "/api/chat/conversations", Value::Null)
        .await;
    assert_eq!(s, 405);
}

async fn unavailable_when_the_writer_is_stopped(api: Api, cid: i64) {
    let Api { ctx, .. } = api;
    ctx.writer.clone().flush_and_stop().await;
    let body = serde_json::to_vec(&json!({"conversationId": cid, "content": "late"})).unwrap();
    let r = handle(
        &ctx,
        brand(1),
        &Method::POST,
        "/api/chat/messages",
        None,
        &body,
    )
    .await;
    assert_eq!(r.status, 503);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(code(&v), "unavailable");
}

async fn suite(url: &str) {
    let api = Api::new(url).await;
    let cid = conversations(&api).await;
    messages(&api, cid).await;
    listing_and_hiding(&api, cid).await;
    unavailable_when_the_writer_is_stopped(api, cid).await;
}

#[tokio::test]
async fn rest_on_memory() {
    suite("memory").await;
}

#[tokio::test]
async fn rest_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("chatwire-rest-{}", pg::random_suffix()));
    suite(&format!("sqlite://{}", dir.join("chat.db").display())).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn rest_on_postgres() {
    let db = pg::TestDb::create().await;
    suite(&db.url).await;
}
