//! PostgreSQL under concurrency: a conversation's ids committed in id order across writers
//! (nodes), each message's exact predecessor, and the grouped statements (read pointer moves,
//! membership and recovery reads, history pages) that serve crowds of calls at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chatwire_store::{AnyStore, HistoryQuery, Profile, Store, StoreError, TempId, UserKey};
use common::{brand, infl, msg, pg, q, send};

/// A fresh PostgreSQL store with two direct conversations of brand `first` (with influencers
/// `first + 1` and `first + 2`), and a second pool on the same database: another node's writer.
struct TwoWriters {
    _db: pg::TestDb,
    store: chatwire_store::PgStore,
    a: chatwire_store::UserKey,
    b: chatwire_store::UserKey,
    conv: i64,
    other: i64,
    admin: sqlx::PgPool,
}

async fn two_writers(first: i64) -> TwoWriters {
    let db = pg::TestDb::create().await;
    let store = chatwire_store::PgStore::connect(&db.url, true)
        .await
        .unwrap();
    let (a, b) = (brand(first), infl(first + 1));
    let conv = store.create_direct(a, b).await.unwrap().0.id;
    let other = store.create_direct(a, infl(first + 2)).await.unwrap().0.id;
    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
    TwoWriters {
        _db: db,
        store,
        a,
        b,
        conv,
        other,
        admin,
    }
}

/// Another node's transaction holding `conv`'s row lock (what every insert path takes before
/// drawing ids).
async fn hold_conversation(
    admin: &sqlx::PgPool,
    conv: i64,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    hold(
        admin,
        &format!("SELECT id FROM conversations WHERE id = {conv} FOR NO KEY UPDATE"),
    )
    .await
}

/// A transaction that has run `locking` (and so holds what it locked) until it ends.
async fn hold(admin: &sqlx::PgPool, locking: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = admin.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(locking.to_owned()))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// Two writers (two nodes) on one conversation: a batch must not draw its ids while another
/// transaction that already drew ids for the same conversation is uncommitted, or a later
/// commit could land a smaller id under what a reader already saw. Every write path waits for
/// the conversation's row lock.
#[tokio::test]
async fn postgres_commits_a_conversations_ids_in_id_order_across_writers() {
    use chatwire_store::postgres::WritePath;
    let w = two_writers(80).await;
    for path in [WritePath::Insert, WritePath::Statement, WritePath::Copy] {
        w.store.set_write_path(path);
        // Another node's transaction: holds the conversation's lock and drew an id.
        let mut tx = hold_conversation(&w.admin, w.conv).await;
        let held: i64 = sqlx::query_scalar("SELECT nextval('messages_id_seq')")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        // Another conversation is not held up.
        let free = w
            .store
            .insert_batch(&[msg(w.other, w.a, "free", None)])
            .await
            .unwrap();
        assert!(free[0].is_ok());
        let batch = [msg(w.conv, w.a, "waits", None)];
        let mut insert = std::pin::pin!(w.store.insert_batch(&batch));
        let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut insert).await;
        assert!(
            early.is_err(),
            "{path:?}: the insert drew ids while the conversation was locked"
        );
        tx.commit().await.unwrap();
        let stored = insert.await.unwrap().pop().unwrap().unwrap();
        assert!(
            stored.message.id > held,
            "{path:?}: id {} after {held}",
            stored.message.id
        );
    }
}

/// Each stored message knows its conversation's previous message id exactly, including when
/// another node's transaction committed one while this insert waited for the conversation's row
/// lock (its statement's snapshot is older than that commit), and within one batch.
#[tokio::test]
async fn postgres_gives_each_message_its_exact_predecessor() {
    use chatwire_store::postgres::WritePath;
    let w = two_writers(90).await;
    let first = w
        .store
        .insert_batch(&[msg(w.conv, w.a, "first", None)])
        .await
        .unwrap();
    let first = first[0].as_ref().unwrap();
    assert_eq!(first.prev, Some(0), "a conversation's first message");
    let mut last = first.message.id;
    for path in [WritePath::Insert, WritePath::Statement, WritePath::Copy] {
        w.store.set_write_path(path);
        // Another node's writer: holds the lock, stores a message and moves last_message_id.
        let mut tx = hold_conversation(&w.admin, w.conv).await;
        let theirs: i64 = sqlx::query_scalar(
            "INSERT INTO messages (id, conversation_id, sender_type, sender_id, message_type, content)
             VALUES (nextval('messages_id_seq'), $1, 2, $2, 'text', 'theirs') RETURNING id",
        )
        .bind(w.conv)
        .bind(w.b.id)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        sqlx::query("UPDATE conversations SET last_message_id = $2 WHERE id = $1")
            .bind(w.conv)
            .bind(theirs)
            .execute(&mut *tx)
            .await
            .unwrap();
        // Two of ours in one batch, with another conversation's in between.
        let batch = [
            msg(w.conv, w.a, "one", Some(TempId::Str(format!("{path:?}-1")))),
            msg(w.other, w.a, "elsewhere", None),
            msg(w.conv, w.a, "two", Some(TempId::Str(format!("{path:?}-2")))),
        ];
        let mut insert = std::pin::pin!(w.store.insert_batch(&batch));
        let early = tokio::time::timeout(std::time::Duration::from_millis(200), &mut insert).await;
        assert!(early.is_err(), "{path:?}: waits for the lock");
        tx.commit().await.unwrap();
        let out: Vec<_> = insert
            .await
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(theirs > last);
        assert_eq!(
            out[0].prev,
            Some(theirs),
            "{path:?}: after the other node's"
        );
        assert_eq!(
            out[2].prev,
            Some(out[0].message.id),
            "{path:?}: within the batch"
        );
        assert!(out[1].prev.is_some(), "{path:?}: {:?}", out[1].prev);
        last = out[2].message.id;
        // A retried send is a duplicate: no predecessor claimed, nothing moved.
        let again = w
            .store
            .insert_batch(&[msg(
                w.conv,
                w.a,
                "two",
                Some(TempId::Str(format!("{path:?}-2"))),
            )])
            .await
            .unwrap();
        let again = again[0].as_ref().unwrap();
        assert!(again.duplicate);
        assert_eq!(again.prev, None);
    }
    let next = w
        .store
        .insert_batch(&[msg(w.conv, w.b, "next", None)])
        .await
        .unwrap();
    assert_eq!(next[0].as_ref().unwrap().prev, Some(last));
}

/// Read pointer moves that arrive together go to PostgreSQL as one statement, and each call still
/// gets its own answer: targets, `forbidden` and `not_found` stay with the call that earned them,
/// pointers never move backwards, and two nodes moving the same pointers at once both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_groups_concurrent_read_pointer_moves() {
    let db = pg::TestDb::create().await;
    let AnyStore::Postgres(node_a) = AnyStore::connect(&db.url, true).await.unwrap() else {
        panic!("a postgres:// URL opens the PostgreSQL store");
    };
    let AnyStore::Postgres(node_b) = AnyStore::connect(&db.url, false).await.unwrap() else {
        panic!("a postgres:// URL opens the PostgreSQL store");
    };
    let (a, b) = (
        std::sync::Arc::new(AnyStore::Postgres(node_a.clone())),
        std::sync::Arc::new(AnyStore::Postgres(node_b.clone())),
    );
    // 20 direct conversations, 3 messages each from the brand.
    let mut convs = Vec::new();
    for i in 0..20 {
        let (brand_i, infl_i) = (brand(500 + i), infl(600 + i));
        let conv = a.create_direct(brand_i, infl_i).await.unwrap().0.id;
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(
                send(&a, msg(conv, brand_i, &format!("m{n}"), None))
                    .await
                    .message
                    .id,
            );
        }
        convs.push((conv, infl_i, ids));
    }
    let before = node_a.read_batches();
    type Want = Result<i64, StoreError>;
    let mut calls: Vec<tokio::task::JoinHandle<(Want, Want)>> = Vec::new();
    let outsider = infl(999);
    for (conv, reader, ids) in &convs {
        let (conv, reader, ids) = (*conv, *reader, ids.clone());
        let cases: [(UserKey, i64, Option<i64>, Want); 6] = [
            (reader, conv, Some(ids[0]), Ok(ids[0])),
            (reader, conv, None, Ok(ids[2])),
            (reader, conv, Some(ids[1]), Ok(ids[1])),
            (outsider, conv, None, Err(StoreError::Forbidden)),
            (
                reader,
                conv,
                Some(ids[2] + 10_000),
                Err(StoreError::NotFound),
            ),
            (reader, conv + 100_000, None, Err(StoreError::NotFound)),
        ];
        for (k, (user, c, up_to, want)) in cases.into_iter().enumerate() {
            // Every other call from the second node, in the other order.
            let store = if k % 2 == 0 { a.clone() } else { b.clone() };
            calls.push(tokio::spawn(async move {
                (store.mark_read(c, user, up_to).await, want)
            }));
        }
    }
    for call in calls {
        let (got, want) = call.await.unwrap();
        assert_eq!(got, want);
    }
    let batches = node_a.read_batches() - before;
    assert!(
        batches < 60,
        "60 concurrent moves on one node took {batches} statements"
    );
    // Each reader's pointer ends at the newest message: the lower moves did not pull it back.
    let all: Vec<i64> = convs.iter().map(|(c, _, _)| *c).collect();
    let mut got = a.read_pointers(&all).await.unwrap();
    got.sort_unstable();
    let mut want: Vec<(i64, UserKey, i64)> =
        convs.iter().map(|(c, r, ids)| (*c, *r, ids[2])).collect();
    want.sort_unstable();
    assert_eq!(got, want);

    // Profiles from token claims, upserted together by a connect storm on node A: node B (which
    // has none of them cached) reads each user's own claims back.
    let claims = |i: i64| Profile {
        username: format!("storm_{i}"),
        first_name: Some(format!("F{i}")),
        last_name: (i % 2 == 0).then(|| format!("L{i}")),
        profile_image: None,
    };
    let upserts: Vec<_> = (0..50)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move { a.ensure_user(brand(700 + i), Some(claims(i))).await })
        })
        .collect();
    for (i, u) in upserts.into_iter().enumerate() {
        assert_eq!(*u.await.unwrap().unwrap(), claims(i as i64));
    }
    for i in 0..50 {
        assert_eq!(
            *b.ensure_user(brand(700 + i), None).await.unwrap(),
            claims(i)
        );
    }
}

/// A fresh PostgreSQL database and a store on it, to share between tasks (keep the database
/// alive as long as the store).
async fn shared_pg_store() -> (pg::TestDb, std::sync::Arc<AnyStore>) {
    let db = pg::TestDb::create().await;
    let store = std::sync::Arc::new(AnyStore::connect(&db.url, true).await.unwrap());
    (db, store)
}

/// The grouped reads of a connect (a user's conversations, a conversation's participants), many
/// at once: each call gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_groups_concurrent_membership_reads() {
    let (_db, store) = shared_pg_store().await;
    // Brand b_i in a direct conversation with influencer i_i and, for even i, a group of both
    // with influencer i_(i+1).
    let mut want = Vec::new();
    for i in 0..30 {
        let (b, f, g) = (brand(800 + i), infl(900 + i), infl(901 + i));
        let direct = store.create_direct(b, f).await.unwrap().0.id;
        let mut convs = vec![direct];
        if i % 2 == 0 {
            convs.push(store.create_group(b, &[f, g], None, 10).await.unwrap().id);
        }
        want.push((b, convs));
    }
    let calls: Vec<_> = want
        .iter()
        .cloned()
        .map(|(user, convs)| {
            let store = store.clone();
            tokio::spawn(async move {
                let got = store.conversations_of(user).await.unwrap();
                assert_eq!(got, convs, "conversations of {user:?}");
                for c in convs {
                    let members = store.participants(c).await.unwrap().unwrap();
                    assert!(members.contains(&user), "{user:?} in {c}");
                    assert!(members.windows(2).all(|w| w[0] < w[1]), "in key order");
                }
                assert_eq!(store.participants(-user.id).await.unwrap(), None);
                assert!(
                    store
                        .conversations_of(infl(5_000 + user.id))
                        .await
                        .unwrap()
                        .is_empty()
                );
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
}

/// The reads a reconnect storm makes, concurrently: each recovering socket's session row, its
/// conversations' last ids, its rooms' read pointers and its missed messages (history pages,
/// REST's too). Grouped on PostgreSQL; every call still gets its own answer, `forbidden` and
/// `not_found` included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_groups_concurrent_history_and_recovery_reads() {
    use chatwire_store::{RecoverySession, StoreError};
    let (_db, store) = shared_pg_store().await;
    let mut cases = Vec::new();
    for i in 0..30 {
        let (b, f) = (brand(1_000 + i), infl(1_100 + i));
        let conv = store.create_direct(b, f).await.unwrap().0.id;
        let mut ids = Vec::new();
        for k in 0..(i % 4 + 2) {
            let text = if i % 2 == 0 && k == 0 {
                "a needle".to_owned()
            } else {
                format!("m{i}-{k}")
            };
            ids.push(send(&store, msg(conv, b, &text, None)).await.message.id);
        }
        store.mark_read(conv, f, Some(ids[0])).await.unwrap();
        store
            .recovery_save(&RecoverySession {
                pid: format!("p{i}"),
                user: f,
                sid: format!("s{i}"),
                state: "{}".into(),
                expires_at_ms: 10_000,
            })
            .await
            .unwrap();
        cases.push((i, b, f, conv, ids));
    }
    let calls: Vec<_> = cases
        .into_iter()
        .map(|(i, b, f, conv, ids)| {
            let store = store.clone();
            tokio::spawn(async move {
                let page = store.history(conv, f, q(2)).await.unwrap();
                let newest: Vec<i64> = page.messages.iter().map(|m| m.id).collect();
                assert_eq!(
                    newest,
                    [ids[ids.len() - 1], ids[ids.len() - 2]],
                    "page of {conv}"
                );
                // A next page exactly when there are more than 2 messages.
                let more = (ids.len() > 2).then(|| ids[ids.len() - 2]);
                assert_eq!(page.next_cursor, more, "cursor of {conv}");
                assert!(page.messages.iter().all(|m| m.conversation_id == conv));
                let search = HistoryQuery {
                    search: Some("NEEDLE"),
                    ..q(10)
                };
                let found = store.history(conv, f, search).await.unwrap().messages;
                let want: &[i64] = if i % 2 == 0 { &ids[..1] } else { &[] };
                assert_eq!(found.iter().map(|m| m.id).collect::<Vec<_>>(), want);
                assert!(matches!(
                    store.history(conv, infl(5_000), q(2)).await,
                    Err(StoreError::Forbidden)
                ));
                assert!(matches!(
                    store.history(-conv, f, q(2)).await,
                    Err(StoreError::NotFound)
                ));
                assert_eq!(
                    store.last_message_ids(b).await.unwrap(),
                    [(conv, ids[ids.len() - 1])]
                );
                assert_eq!(
                    store.read_pointers(&[conv]).await.unwrap(),
                    [(conv, f, ids[0])]
                );
                let pid = format!("p{i}");
                let row = store.recovery_load(&pid, 5_000).await.unwrap().unwrap();
                assert_eq!((row.user, row.sid), (f, format!("s{i}")));
                assert_eq!(
                    store.recovery_load(&pid, 10_000).await.unwrap(),
                    None,
                    "expired"
                );
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
}

/// A store outlives the runtimes that call it: shards stop one by one at shutdown, and a call
/// from a shard still draining must not fail because the shard whose call started the batch it
/// waits behind is gone (that batch ran on the stopped shard's runtime and died with it).
#[test]
fn postgres_calls_survive_the_runtime_that_started_their_batch() {
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let setup = rt();
    let db = setup.block_on(pg::TestDb::create());
    let store = std::sync::Arc::new(setup.block_on(AnyStore::connect(&db.url, true)).unwrap());
    let (held, other) = setup.block_on(async {
        let held = store.create_direct(brand(1), infl(1)).await.unwrap().0.id;
        let other = store.create_direct(brand(2), infl(2)).await.unwrap().0.id;
        (held, other)
    });
    // Another transaction holds the participants table: a batch reading it waits (for less
    // than the group's 2 s lock timeout).
    let lock = setup.block_on(async {
        let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
        hold(&admin, "LOCK TABLE participants IN ACCESS EXCLUSIVE MODE").await
    });
    // Shard A's call starts a batch, which waits for the table.
    let first = rt();
    let a = store.clone();
    first.block_on(async {
        tokio::spawn(async move { a.participants(held).await });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    });
    // Shard B's call queues behind it; then shard A stops, then the table is let go.
    let b = store.clone();
    let waiting = std::thread::spawn(move || rt().block_on(b.participants(other)));
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(first);
    std::thread::sleep(std::time::Duration::from_millis(100));
    setup.block_on(async { lock.rollback().await.unwrap() });
    let got = waiting.join().unwrap();
    let members: Option<std::sync::Arc<[UserKey]>> = Some(vec![brand(2), infl(2)].into());
    assert_eq!(got, Ok(members), "shard B's call");
    setup.block_on(async move { drop(db) });
}

/// A user's row held by another transaction holds back the other connects grouped with it for
/// at most the group's lock timeout: they then upsert alone, and the held one waits alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_held_user_row_does_not_hold_back_other_connects() {
    let (db, store) = shared_pg_store().await;
    let claims = |name: &str| Profile {
        username: name.into(),
        first_name: None,
        last_name: None,
        profile_image: None,
    };
    store.ensure_user(brand(1), None).await.unwrap();
    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
    let tx = hold(
        &admin,
        "SELECT 1 FROM users WHERE user_type = 1 AND id = 1 FOR UPDATE",
    )
    .await;
    let held = tokio::spawn({
        let store = store.clone();
        let p = claims("held");
        async move { store.ensure_user(brand(1), Some(p)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let free = tokio::time::timeout(
        std::time::Duration::from_secs(4),
        store.ensure_user(brand(2), Some(claims("free"))),
    )
    .await
    .expect("another user's connect went on while the row was held");
    assert_eq!(free.unwrap().username, "free");
    assert!(
        !held.is_finished(),
        "the held user's upsert waits for its row"
    );
    tx.rollback().await.unwrap();
    assert_eq!(held.await.unwrap().unwrap().username, "held");
    let fresh = AnyStore::connect(&db.url, false).await.unwrap();
    assert_eq!(
        fresh.ensure_user(brand(1), None).await.unwrap().username,
        "held"
    );
}
