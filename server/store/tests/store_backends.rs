//! Every store operation, run against the three backends with the same expectations:
//! MemoryStore, SqliteStore (temp file) and PgStore (a fresh PostgreSQL database).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chatwire_store::{
    AnyStore, ConversationKind, HistoryQuery, Profile, Store, StoreError, TempId,
};
use common::{brand, infl, msg, pg, q, send};

async fn identity(store: &AnyStore) {
    let p = store.ensure_user(brand(1), None).await.unwrap();
    assert_eq!(p.username, "brand_1");
    assert_eq!(p.first_name, None);
    let claims = Profile {
        username: "acme".into(),
        first_name: Some("Ann".into()),
        last_name: Some("Lee".into()),
        profile_image: Some("https://img/x.png".into()),
    };
    assert_eq!(
        *store
            .ensure_user(brand(1), Some(claims.clone()))
            .await
            .unwrap(),
        claims
    );
    // A later connect without claims keeps the stored profile.
    assert_eq!(*store.ensure_user(brand(1), None).await.unwrap(), claims);
    assert_eq!(
        store.ensure_user(infl(1), None).await.unwrap().username,
        "influencer_1"
    );
    assert!(matches!(
        store.ensure_user(brand(0), None).await,
        Err(StoreError::BadRequest(_))
    ));
}

async fn conversations_and_messages(store: &AnyStore) {
    let (a, b, c) = (brand(10), infl(10), infl(11));
    store.ensure_user(a, None).await.unwrap();
    // 1:1: created once per pair, from either side; the other user is created on the way.
    let (conv, created) = store.create_direct(a, b).await.unwrap();
    assert!(created);
    assert_eq!(conv.kind, ConversationKind::Direct);
    assert_eq!(conv.participants.len(), 2);
    assert_eq!(
        conv.participants
            .iter()
            .find(|p| p.user == b)
            .unwrap()
            .profile
            .username,
        "influencer_10"
    );
    let (again, created) = store.create_direct(b, a).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, conv.id);
    assert!(matches!(
        store.create_direct(a, a).await,
        Err(StoreError::BadRequest(_))
    ));
    let cid = conv.id;

    assert_eq!(&*store.participants(cid).await.unwrap().unwrap(), &[a, b]);
    assert_eq!(store.participants(cid + 1000).await.unwrap(), None);
    assert_eq!(store.conversations_of(b).await.unwrap(), vec![cid]);

    // Idempotent sends: 5 and "5" are different keys; a repeat returns the first row.
    let s1 = send(store, msg(cid, a, "hello", Some(TempId::Int(5)))).await;
    assert!(!s1.duplicate);
    assert_eq!(s1.message.temp_id, Some(TempId::Int(5)));
    assert!(!s1.message.is_read);
    let s2 = send(
        store,
        msg(cid, a, "hello again", Some(TempId::Str("5".into()))),
    )
    .await;
    assert!(!s2.duplicate);
    assert!(s2.message.id > s1.message.id);
    let dup = send(store, msg(cid, a, "changed text", Some(TempId::Int(5)))).await;
    assert!(dup.duplicate);
    assert_eq!(dup.message.id, s1.message.id);
    assert_eq!(dup.message.content, "hello");
    // The same tempId from another sender is another message.
    let s3 = send(store, msg(cid, b, "hi", Some(TempId::Int(5)))).await;
    assert!(!s3.duplicate);

    // In one batch: duplicates share one row; refusals do not affect the others.
    let out = store
        .insert_batch(&[
            msg(cid, a, "x", Some(TempId::Str("k".into()))),
            msg(cid, c, "not a participant", None),
            msg(cid + 1000, a, "no such conversation", None),
            msg(cid, a, "x", Some(TempId::Str("k".into()))),
            msg(cid, b, "no temp id", None),
        ])
        .await
        .unwrap();
    assert_eq!(out.len(), 5);
    let first = out[0].as_ref().unwrap();
    let copy = out[3].as_ref().unwrap();
    assert!(!first.duplicate && copy.duplicate);
    assert_eq!(first.message.id, copy.message.id);
    assert_eq!(out[1], Err(StoreError::Forbidden));
    assert_eq!(out[2], Err(StoreError::NotFound));
    assert!(out[4].as_ref().unwrap().message.id > first.message.id);
    let newest = out[4].as_ref().unwrap().message.id;

    // History: newest first, cursor, limit, search.
    let page = store.history(cid, b, q(2)).await.unwrap();
    assert_eq!(page.messages.len(), 2);
    assert_eq!(page.messages[0].id, newest);
    assert!(page.messages[0].id > page.messages[1].id);
    let next = page.next_cursor.unwrap();
    let page2 = store
        .history(
            cid,
            b,
            HistoryQuery {
                before: Some(next),
                limit: 50,
                search: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page2.messages.len(), 3);
    assert_eq!(page2.next_cursor, None);
    assert!(page2.messages.iter().all(|m| m.id < next));
    let found = store
        .history(
            cid,
            b,
            HistoryQuery {
                before: None,
                limit: 50,
                search: Some("HELLO"),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        found
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["hello again", "hello"]
    );
    assert_eq!(
        store.history(cid, c, q(10)).await.unwrap_err(),
        StoreError::Forbidden
    );
    assert_eq!(
        store.history(cid + 1000, a, q(10)).await.unwrap_err(),
        StoreError::NotFound
    );
    let m = &page.messages[0];
    assert_eq!(m.sender, b);
    assert_eq!(m.sender_profile.username, "influencer_10");

    // Unread counts never include your own messages: a sent 4 (hello, hello again, x, ...), b 2.
    let ua = store.unread_counts(a).await.unwrap();
    assert_eq!((ua.total, ua.conversations.clone()), (2, vec![(cid, 2)]));
    let ub = store.unread_counts(b).await.unwrap();
    assert_eq!((ub.total, ub.conversations.clone()), (3, vec![(cid, 3)]));

    // Read pointers: b reads up to s2; a's messages up to s2 are read, later ones not.
    assert_eq!(
        store.mark_read(cid, b, Some(s2.message.id)).await.unwrap(),
        s2.message.id
    );
    let h = store.history(cid, a, q(50)).await.unwrap();
    for m in &h.messages {
        if m.sender == a {
            assert_eq!(m.is_read, m.id <= s2.message.id, "message {}", m.id);
        }
    }
    assert_eq!(store.unread_counts(b).await.unwrap().total, 1);
    // Never backwards.
    assert_eq!(
        store.mark_read(cid, b, Some(s1.message.id)).await.unwrap(),
        s1.message.id
    );
    assert_eq!(store.unread_counts(b).await.unwrap().total, 1);
    // Without a message id: up to the newest.
    assert_eq!(store.mark_read(cid, b, None).await.unwrap(), newest);
    assert_eq!(store.unread_counts(b).await.unwrap().total, 0);
    assert_eq!(
        store.mark_read(cid, c, None).await.unwrap_err(),
        StoreError::Forbidden
    );
    assert_eq!(
        store.mark_read(cid + 1000, a, None).await.unwrap_err(),
        StoreError::NotFound
    );
    assert_eq!(
        store
            .mark_read(cid, a, Some(newest + 1000))
            .await
            .unwrap_err(),
        StoreError::NotFound
    );
    let dup = send(store, msg(cid, a, "x", Some(TempId::Str("k".into())))).await;
    assert!(
        dup.duplicate && dup.message.is_read,
        "a duplicate reports the stored read state"
    );

    // A conversation with no message yet: read pointer reply is 0.
    let (empty, _) = store.create_direct(a, c).await.unwrap();
    assert_eq!(store.mark_read(empty.id, a, None).await.unwrap(), 0);
}

async fn lists_groups_and_hiding(store: &AnyStore) {
    let me = brand(20);
    let mut ids = Vec::new();
    for i in 0..5 {
        let (c, _) = store.create_direct(me, infl(100 + i)).await.unwrap();
        ids.push(c.id);
    }
    // Activity in the oldest conversation moves it first.
    std::thread::sleep(std::time::Duration::from_millis(5));
    send(store, msg(ids[0], infl(100), "ping", None)).await;
    let page = store.list_conversations(me, None, 2).await.unwrap();
    assert_eq!(page.conversations.len(), 2);
    assert_eq!(page.conversations[0].id, ids[0]);
    let first = &page.conversations[0];
    assert_eq!(first.unread_count, 1);
    assert_eq!(first.last_message.as_ref().unwrap().content, "ping");
    assert_eq!(first.participants.len(), 2);
    let mut seen: Vec<i64> = page.conversations.iter().map(|c| c.id).collect();
    let mut cursor = page.next_cursor;
    while let Some(c) = cursor {
        let p = store.list_conversations(me, Some(c), 2).await.unwrap();
        seen.extend(p.conversations.iter().map(|c| c.id));
        cursor = p.next_cursor;
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        5,
        "pages cover every conversation once: {seen:?}"
    );
    assert_eq!(sorted, {
        let mut v = ids.clone();
        v.sort_unstable();
        v
    });

    // Hidden until a new message arrives.
    store.hide(ids[1], me).await.unwrap();
    let all = store.list_conversations(me, None, 100).await.unwrap();
    assert!(!all.conversations.iter().any(|c| c.id == ids[1]));
    assert_eq!(all.conversations.len(), 4);
    send(store, msg(ids[1], infl(101), "back", None)).await;
    let all = store.list_conversations(me, None, 100).await.unwrap();
    assert_eq!(all.conversations[0].id, ids[1]);
    assert_eq!(
        store.hide(ids[1], brand(999)).await.unwrap_err(),
        StoreError::Forbidden
    );
    assert_eq!(
        store.hide(999_999, me).await.unwrap_err(),
        StoreError::NotFound
    );

    // Groups: caller included, duplicates ignored, limits.
    let g = store
        .create_group(
            me,
            &[infl(1), infl(2), infl(1), me],
            Some("Launch".into()),
            1000,
        )
        .await
        .unwrap();
    assert_eq!(g.kind, ConversationKind::Group);
    assert_eq!(g.title.as_deref(), Some("Launch"));
    assert_eq!(g.participants.len(), 3);
    assert!(matches!(
        store.create_group(me, &[infl(1), infl(2)], None, 2).await,
        Err(StoreError::TooLarge(_))
    ));
    assert!(matches!(
        store.create_group(me, &[me], None, 10).await,
        Err(StoreError::BadRequest(_))
    ));
    // Group read state: read only once every other member passed it.
    let m = send(store, msg(g.id, me, "all", None)).await.message;
    store.mark_read(g.id, infl(1), None).await.unwrap();
    assert!(!store.history(g.id, me, q(1)).await.unwrap().messages[0].is_read);
    store.mark_read(g.id, infl(2), Some(m.id)).await.unwrap();
    assert!(store.history(g.id, me, q(1)).await.unwrap().messages[0].is_read);
}

/// `?q=` search folds case in every script, and takes the text literally.
async fn search_folds_unicode_case(store: &AnyStore) {
    let (a, b) = (brand(900), infl(900));
    let cid = store.create_direct(a, b).await.unwrap().0.id;
    for text in [
        "kein ärger heute",
        "ÄRGER im Büro",
        "Ärger",
        "arger ohne Umlaut",
        "a+b (c) 100%_",
    ] {
        send(store, msg(cid, a, text, None)).await;
    }
    let search = |text: &'static str| async move {
        let page = store
            .history(
                cid,
                b,
                HistoryQuery {
                    before: None,
                    limit: 50,
                    search: Some(text),
                },
            )
            .await
            .unwrap();
        page.messages
            .into_iter()
            .map(|m| m.content)
            .collect::<Vec<_>>()
    };
    let all = ["Ärger", "ÄRGER im Büro", "kein ärger heute"];
    assert_eq!(search("Ärger").await, all);
    assert_eq!(search("ärger").await, all);
    assert_eq!(search("BÜRO").await, ["ÄRGER im Büro"]);
    assert_eq!(search("A+B (C) 100%_").await, ["a+b (c) 100%_"]);
    assert!(search("100%x").await.is_empty());
    assert!(search(".*").await.is_empty());
}

/// Recoverable sessions: saved, read back until they expire, touched, deleted, purged; and the
/// per-conversation last ids a session starts from.
async fn recovery_sessions(store: &std::sync::Arc<AnyStore>) {
    use chatwire_store::RecoverySession;
    let (a, b) = (brand(70), infl(71));
    let conv = store.create_direct(a, b).await.unwrap().0.id;
    let other = store.create_direct(a, infl(72)).await.unwrap().0.id;
    let m = send(store, msg(conv, a, "x", None)).await.message;
    let mut ids = store.last_message_ids(a).await.unwrap();
    ids.sort_unstable();
    let mut want = vec![(conv, m.id), (other, 0)];
    want.sort_unstable();
    assert_eq!(ids, want);
    let row = RecoverySession {
        pid: "p1".into(),
        user: a,
        sid: "s1".into(),
        state: "{}".into(),
        expires_at_ms: 1_000,
    };
    store.recovery_save(&row).await.unwrap();
    assert_eq!(
        store.recovery_load("p1", 999).await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(
        store.recovery_load("p1", 1_000).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(store.recovery_load("nope", 0).await.unwrap(), None);
    let newer = RecoverySession {
        state: "{\"rooms\":[1]}".into(),
        ..row.clone()
    };
    store.recovery_save(&newer).await.unwrap();
    store
        .recovery_touch(&["p1".into(), "p2".into()], 5_000)
        .await
        .unwrap();
    let back = store.recovery_load("p1", 4_999).await.unwrap().unwrap();
    assert_eq!(
        (back.state.as_str(), back.expires_at_ms),
        ("{\"rooms\":[1]}", 5_000)
    );
    store.recovery_purge(5_000).await.unwrap();
    assert_eq!(store.recovery_load("p1", 0).await.unwrap(), None, "purged");
    store.recovery_save(&row).await.unwrap();
    store.recovery_delete(&["p1".into()]).await.unwrap();
    assert_eq!(store.recovery_load("p1", 0).await.unwrap(), None, "deleted");
    // A storm of saves at once (the databases write them in groups: the first call alone,
    // the others together in the next batch): every one is kept, and a pid saved twice at
    // once (both in that batch) fails neither save and keeps one of the two states.
    let saves: Vec<_> = (0..300)
        .map(|i| RecoverySession {
            pid: format!("storm{i}"),
            state: format!("{{\"n\":{i}}}"),
            ..row.clone()
        })
        .chain(std::iter::once(RecoverySession {
            pid: "storm150".into(),
            state: "{\"n\":-1}".into(),
            ..row.clone()
        }))
        .map(|r| {
            let store = store.clone();
            tokio::spawn(async move { store.recovery_save(&r).await })
        })
        .collect();
    for save in saves {
        save.await.unwrap().unwrap();
    }
    for i in (0..300).filter(|i| *i != 150) {
        let back = store.recovery_load(&format!("storm{i}"), 0).await.unwrap();
        assert_eq!(back.map(|s| s.state), Some(format!("{{\"n\":{i}}}")));
    }
    let twice = store.recovery_load("storm150", 0).await.unwrap().unwrap();
    assert!(
        ["{\"n\":150}", "{\"n\":-1}"].contains(&twice.state.as_str()),
        "{twice:?}"
    );
}

/// The read pointers of some conversations' participants (what a recovery compares with the
/// client's offset): only pointers above 0, only the conversations asked for.
async fn read_pointers(store: &AnyStore) {
    let (a, b, c) = (brand(80), infl(81), infl(82));
    let conv = store.create_direct(a, b).await.unwrap().0.id;
    let group = store.create_group(a, &[b, c], None, 10).await.unwrap().id;
    let elsewhere = store.create_direct(a, c).await.unwrap().0.id;
    let m1 = send(store, msg(conv, a, "1", None)).await.message.id;
    let m2 = send(store, msg(conv, a, "2", None)).await.message.id;
    let g = send(store, msg(group, b, "g", None)).await.message.id;
    let e = send(store, msg(elsewhere, c, "e", None)).await.message.id;
    store.mark_read(conv, b, Some(m1)).await.unwrap();
    store.mark_read(conv, b, None).await.unwrap();
    store.mark_read(group, c, None).await.unwrap();
    store.mark_read(elsewhere, a, Some(e)).await.unwrap();
    let mut got = store.read_pointers(&[conv, group]).await.unwrap();
    got.sort_unstable();
    let mut want = vec![(conv, b, m2), (group, c, g)];
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(store.read_pointers(&[]).await.unwrap().is_empty());
}

async fn suite(store: AnyStore) {
    let store = std::sync::Arc::new(store);
    read_pointers(&store).await;
    recovery_sessions(&store).await;
    identity(&store).await;
    search_folds_unicode_case(&store).await;
    conversations_and_messages(&store).await;
    lists_groups_and_hiding(&store).await;
    store.ping().await.unwrap();
}

#[tokio::test]
async fn memory_store() {
    suite(AnyStore::connect("memory", true).await.unwrap()).await;
}

#[tokio::test]
async fn sqlite_store() {
    let dir = std::env::temp_dir().join(format!("chatwire-store-{}", pg::random_suffix()));
    let url = format!("sqlite://{}", dir.join("nested/chat.db").display());
    suite(AnyStore::connect(&url, true).await.unwrap()).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn postgres_store() {
    let db = pg::TestDb::create().await;
    suite(AnyStore::connect(&db.url, true).await.unwrap()).await;
}

/// Recovery session rows (two commits per connecting user) do not wait for the write-ahead log's
/// flush; messages and every other write still do.
#[tokio::test]
async fn postgres_session_rows_commit_asynchronously_and_nothing_else_does() {
    let db = pg::TestDb::create().await;
    let AnyStore::Postgres(store) = AnyStore::connect(&db.url, true).await.unwrap() else {
        panic!("a postgres:// URL opens the PostgreSQL store");
    };
    let mode = |pool: &sqlx::PgPool| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SHOW synchronous_commit")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(mode(store.pool()).await, "on", "queries and read pointers");
    assert_eq!(
        mode(store.session_pool()).await,
        "off",
        "recovery session rows"
    );
    assert_eq!(
        mode(store.session_save_pool()).await,
        "off",
        "recovery session rows, saved in groups"
    );
    // The rows themselves behave as before (the suite above checks save/load/touch/purge).
    let row = chatwire_store::RecoverySession {
        pid: "async".into(),
        sid: "s".into(),
        user: brand(1),
        state: "{}".into(),
        expires_at_ms: 10_000,
    };
    let any = AnyStore::Postgres(store);
    any.recovery_save(&row).await.unwrap();
    assert_eq!(any.recovery_load("async", 0).await.unwrap(), Some(row));
}

#[tokio::test]
async fn postgres_search_folds_unicode_case_in_a_c_locale_database() {
    // Under LC_CTYPE 'C', PostgreSQL's lower() folds ASCII only.
    let db = pg::TestDb::create_with("TEMPLATE template0 LC_CTYPE 'C' LC_COLLATE 'C'").await;
    let store = AnyStore::connect(&db.url, true).await.unwrap();
    search_folds_unicode_case(&store).await;
}

#[tokio::test]
async fn unknown_database_urls_are_refused() {
    assert!(AnyStore::connect("mysql://x", true).await.is_err());
}
