//! The BatchWriter on real databases: idempotency within a batch, across batches and across a
//! restart (store re-opened on the same PostgreSQL database / SQLite file), results in id order,
//! refusals reported per message, and `flush_and_stop` committing everything queued.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/support/pg.rs"]
mod pg;

use std::sync::Arc;
use std::time::Duration;

use chatwire_store::batch::{BatchConfig, BatchWriter, CommitSink, WriterHandle};
use chatwire_store::{
    AnyStore, MessageType, NewMessage, Store, StoreError, Stored, TempId, UserKey, UserType,
};

/// Nobody waits for these sends: the sink reports every outcome to the test.
#[derive(Debug)]
enum ReplyTo {
    None,
}

enum Event {
    Committed(Vec<Stored>),
    Failed(Vec<NewMessage>, StoreError),
}

struct Sink(flume::Sender<Event>);

impl CommitSink for Sink {
    type Reply = ReplyTo;

    fn committed(&self, batch: Vec<(Stored, ReplyTo)>) {
        let _ = self.0.send(Event::Committed(
            batch.into_iter().map(|(s, _)| s).collect(),
        ));
    }
    fn failed(&self, batch: Vec<(NewMessage, ReplyTo)>, error: StoreError) {
        let _ = self.0.send(Event::Failed(
            batch.into_iter().map(|(m, _)| m).collect(),
            error,
        ));
    }
}

fn a() -> UserKey {
    UserKey::new(UserType::Brand, 1)
}
fn b() -> UserKey {
    UserKey::new(UserType::Influencer, 1)
}

fn msg(cid: i64, sender: UserKey, temp: Option<TempId>) -> NewMessage {
    NewMessage {
        conversation_id: cid,
        sender,
        message_type: MessageType::Text,
        content: "hi".into(),
        attachment_url: None,
        attachment_name: None,
        temp_id: temp,
    }
}

fn spawn(store: Arc<AnyStore>, window_ms: u64) -> (WriterHandle<ReplyTo>, flume::Receiver<Event>) {
    spawn_with(
        store,
        BatchConfig::default().with_window(Duration::from_millis(window_ms)),
    )
}

/// A writer with `cfg` whose outcomes arrive on the returned receiver.
fn spawn_with(
    store: Arc<AnyStore>,
    cfg: BatchConfig,
) -> (WriterHandle<ReplyTo>, flume::Receiver<Event>) {
    let (tx, rx) = flume::unbounded();
    (BatchWriter::spawn(store, cfg, Sink(tx)), rx)
}

/// One lane (commits in order, one connection) with this commit deadline.
fn one_lane(commit_deadline: Duration) -> BatchConfig {
    BatchConfig::default()
        .with_lanes(1)
        .with_commit_deadline(commit_deadline)
}

/// A fresh PostgreSQL database, a store on it and one conversation between `a()` and `b()`.
async fn pg_conversation() -> (pg::TestDb, Arc<AnyStore>, i64) {
    let db = pg::TestDb::create().await;
    let store = Arc::new(AnyStore::connect(&db.url, true).await.unwrap());
    let (conv, _) = store.create_direct(a(), b()).await.unwrap();
    (db, store, conv.id)
}

/// The PostgreSQL store inside `store`.
fn pg_of(store: &AnyStore) -> &chatwire_store::PgStore {
    let AnyStore::Postgres(pgs) = store else {
        panic!("a PostgreSQL store");
    };
    pgs
}

/// Waits until `n` results (committed or failed) arrived; returns committed rows and failures.
async fn collect(
    rx: &flume::Receiver<Event>,
    n: usize,
) -> (Vec<Vec<Stored>>, Vec<(NewMessage, StoreError)>) {
    let (mut batches, mut failed, mut seen) = (Vec::new(), Vec::new(), 0);
    while seen < n {
        match tokio::time::timeout(Duration::from_secs(20), rx.recv_async())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Committed(rows) => {
                seen += rows.len();
                batches.push(rows);
            }
            Event::Failed(msgs, e) => {
                seen += msgs.len();
                failed.extend(msgs.into_iter().map(|m| (m, e.clone())));
            }
        }
    }
    (batches, failed)
}

/// Submits `m` again and asserts it is answered as a plain duplicate (not published again).
async fn assert_plain_duplicate(
    writer: &WriterHandle<ReplyTo>,
    rx: &flume::Receiver<Event>,
    m: NewMessage,
    why: &str,
) {
    writer.try_submit(m, ReplyTo::None).unwrap();
    let (batches, failed) = collect(rx, 1).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(batches[0][0].duplicate, "{why}");
}

async fn idempotency_and_restart(url: &str) {
    let store = Arc::new(AnyStore::connect(url, true).await.unwrap());
    let (conv, _) = store.create_direct(a(), b()).await.unwrap();
    let cid = conv.id;
    // A 50 ms window puts these in one batch.
    let (writer, rx) = spawn(store.clone(), 50);
    let t = |s: &str| Some(TempId::Str(s.into()));
    for m in [
        msg(cid, a(), t("k1")),
        msg(cid, a(), t("k2")),
        msg(cid, a(), t("k1")),
        msg(cid, b(), t("k1")),
        msg(cid, UserKey::new(UserType::Brand, 99), t("k9")),
        msg(cid, a(), None),
        msg(cid, a(), Some(TempId::Int(1))),
        msg(cid, a(), Some(TempId::Float(1.0))),
    ] {
        writer.try_submit(m, ReplyTo::None).unwrap();
    }
    let (batches, failed) = collect(&rx, 8).await;
    assert_eq!(batches.len(), 1, "one window, one batch");
    let rows = &batches[0];
    assert!(
        rows.windows(2).all(|w| w[0].message.id <= w[1].message.id),
        "sink gets rows in id order"
    );
    let k1: Vec<&Stored> = rows
        .iter()
        .filter(|s| s.message.sender == a() && s.message.temp_id == t("k1"))
        .collect();
    assert_eq!(k1.len(), 2);
    assert_eq!(
        k1[0].message.id, k1[1].message.id,
        "same key in one batch: one row"
    );
    assert_eq!(k1.iter().filter(|s| s.duplicate).count(), 1);
    let n1: Vec<&Stored> = rows
        .iter()
        .filter(|s| matches!(s.message.temp_id, Some(TempId::Int(1) | TempId::Float(_))))
        .collect();
    assert_eq!(n1.len(), 2);
    assert_eq!(
        n1[0].message.id, n1[1].message.id,
        "1 and 1.0 are the same JSON number"
    );
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].1,
        StoreError::Forbidden,
        "a non-participant is refused alone"
    );
    let k1_id = k1[0].message.id;
    let unique_rows = rows.iter().filter(|s| !s.duplicate).count();
    assert_eq!(unique_rows, 5);

    // Across batches.
    writer
        .try_submit(msg(cid, a(), t("k1")), ReplyTo::None)
        .unwrap();
    let (batches, _) = collect(&rx, 1).await;
    assert!(batches[0][0].duplicate);
    assert_eq!(batches[0][0].message.id, k1_id);
    writer.flush_and_stop().await;
    drop(store);

    // Across a restart: a new store on the same database.
    let store = Arc::new(AnyStore::connect(url, true).await.unwrap());
    let (writer, rx) = spawn(store.clone(), 1);
    writer
        .try_submit(msg(cid, a(), t("k1")), ReplyTo::None)
        .unwrap();
    writer
        .try_submit(msg(cid, a(), t("k3")), ReplyTo::None)
        .unwrap();
    let (batches, _) = collect(&rx, 2).await;
    let all: Vec<&Stored> = batches.iter().flatten().collect();
    let again = all.iter().find(|s| s.message.temp_id == t("k1")).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.id, k1_id);
    assert_eq!(again.message.content, "hi");
    let fresh = all.iter().find(|s| s.message.temp_id == t("k3")).unwrap();
    assert!(
        !fresh.duplicate && fresh.message.id > k1_id,
        "ids keep increasing after a restart"
    );
    let history = store
        .history(
            cid,
            a(),
            chatwire_store::HistoryQuery {
                before: None,
                limit: 100,
                search: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        history.messages.len(),
        unique_rows + 1,
        "nothing duplicated in the table"
    );
    writer.flush_and_stop().await;
}

async fn flush_commits_everything_queued(url: &str) {
    let store = Arc::new(AnyStore::connect(url, true).await.unwrap());
    let (conv, _) = store.create_direct(a(), b()).await.unwrap();
    let (writer, rx) = spawn(store.clone(), 1);
    let n = 5000;
    for i in 0..n {
        writer
            .try_submit(msg(conv.id, a(), Some(TempId::Int(i))), ReplyTo::None)
            .unwrap();
    }
    writer.clone().flush_and_stop().await;
    let (batches, failed) = collect(&rx, n as usize).await;
    assert!(failed.is_empty());
    let ids: Vec<i64> = batches.iter().flatten().map(|s| s.message.id).collect();
    assert_eq!(ids.len(), n as usize);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "batches commit sequentially: ids increase"
    );
    assert!(
        batches.len() > 1
            && batches
                .iter()
                .all(|b| b.len() <= BatchConfig::default().max_batch),
        "bounded batch size"
    );
    // After the stop, submits are handed back as `stopped`.
    let rejected = writer
        .try_submit(msg(conv.id, a(), None), ReplyTo::None)
        .unwrap_err();
    assert!(rejected.stopped);
    let unread = store.unread_counts(b()).await.unwrap();
    assert_eq!(unread.total, n);
}

/// With parallel lanes, batches are split by conversation: within every conversation the sink
/// sees ids increasing, and nothing is lost or duplicated.
async fn per_conversation_order_across_lanes(url: &str) {
    let store = Arc::new(AnyStore::connect(url, true).await.unwrap());
    let mut convs = Vec::new();
    for i in 0..10 {
        let (c, _) = store
            .create_direct(a(), UserKey::new(UserType::Influencer, 100 + i))
            .await
            .unwrap();
        convs.push(c.id);
    }
    let (writer, rx) = spawn_with(
        store.clone(),
        BatchConfig::default().with_lanes(3).with_max_batch(256),
    );
    let n = 3000;
    for i in 0..n {
        let cid = convs[i % convs.len()];
        writer
            .try_submit(msg(cid, a(), Some(TempId::Int(i as i64))), ReplyTo::None)
            .unwrap();
    }
    let (batches, failed) = collect(&rx, n).await;
    assert!(failed.is_empty());
    let mut last: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for s in batches.iter().flatten() {
        let prev = last.insert(s.message.conversation_id, s.message.id);
        assert!(
            prev.is_none_or(|p| p < s.message.id),
            "ids increase within a conversation"
        );
        assert!(seen.insert(s.message.id));
    }
    assert_eq!(seen.len(), n);
    writer.flush_and_stop().await;
}

/// A value PostgreSQL refuses (U+0000 in text; validation normally stops it earlier) fails
/// alone: the writer splits the batch until the bad message is isolated.
async fn one_bad_message_fails_alone(url: &str) {
    let store = Arc::new(AnyStore::connect(url, true).await.unwrap());
    let (conv, _) = store.create_direct(a(), b()).await.unwrap();
    let (writer, rx) = spawn(store.clone(), 50);
    for i in 0..10 {
        let mut m = msg(conv.id, a(), Some(TempId::Int(i)));
        if i == 6 {
            m.content = "bad \0 byte".into();
        }
        writer.try_submit(m, ReplyTo::None).unwrap();
    }
    let (batches, failed) = collect(&rx, 10).await;
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 9);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0.temp_id, Some(TempId::Int(6)));
    assert!(matches!(failed[0].1, StoreError::Unavailable(_)));
    writer.flush_and_stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batches() {
    let db = pg::TestDb::create().await;
    idempotency_and_restart(&db.url).await;
    let db = pg::TestDb::create().await;
    flush_commits_everything_queued(&db.url).await;
    let db = pg::TestDb::create().await;
    one_bad_message_fails_alone(&db.url).await;
    let db = pg::TestDb::create().await;
    per_conversation_order_across_lanes(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batches() {
    let dir = std::env::temp_dir().join(format!("chatwire-batch-{}", pg::random_suffix()));
    idempotency_and_restart(&format!("sqlite://{}", dir.join("a.db").display())).await;
    flush_commits_everything_queued(&format!("sqlite://{}", dir.join("b.db").display())).await;
    per_conversation_order_across_lanes(&format!("sqlite://{}", dir.join("c.db").display())).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_batches() {
    idempotency_and_restart_memory().await;
}

/// The memory store has no restart; check the in-batch semantics match.
async fn idempotency_and_restart_memory() {
    let store = Arc::new(AnyStore::connect("memory", true).await.unwrap());
    let (conv, _) = store.create_direct(a(), b()).await.unwrap();
    let (writer, rx) = spawn(store.clone(), 50);
    for _ in 0..3 {
        writer
            .try_submit(
                msg(conv.id, a(), Some(TempId::Str("x".into()))),
                ReplyTo::None,
            )
            .unwrap();
    }
    let (batches, _) = collect(&rx, 3).await;
    let rows: Vec<&Stored> = batches.iter().flatten().collect();
    assert!(rows.iter().all(|s| s.message.id == rows[0].message.id));
    assert_eq!(rows.iter().filter(|s| !s.duplicate).count(), 1);
    writer.flush_and_stop().await;
}

/// Submits racing a graceful stop: every send the queue took is committed (or failed) and
/// reported, none is dropped silently between the writer's last drain and its exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_send_is_answered_when_a_stop_races_submits() {
    for round in 0..40 {
        let store = Arc::new(AnyStore::connect("memory", true).await.unwrap());
        let (conv, _) = store.create_direct(a(), b()).await.unwrap();
        let (writer, rx) = spawn(store.clone(), 0);
        let submitters: Vec<_> = (0..2)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    let mut accepted = 0usize;
                    for i in 0..20_000i64 {
                        let temp = Some(TempId::Int(t * 1_000_000 + i));
                        match writer.try_submit(msg(conv.id, a(), temp), ReplyTo::None) {
                            Ok(()) => accepted += 1,
                            Err(r) if r.stopped => break,
                            Err(_) => std::thread::yield_now(),
                        }
                    }
                    accepted
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_micros(200 + 50 * round)).await;
        writer.clone().flush_and_stop().await;
        let accepted: usize = submitters.into_iter().map(|h| h.join().unwrap()).sum();
        drop(writer);
        let mut answered = 0usize;
        while let Ok(event) = rx.recv_async().await {
            answered += match event {
                Event::Committed(rows) => rows.len(),
                Event::Failed(msgs, _) => msgs.len(),
            };
        }
        assert_eq!(
            answered, accepted,
            "round {round}: every accepted send answered"
        );
    }
}

/// Panics in `committed` (a bug in the sink's code, here on purpose).
struct PanickingSink;

impl CommitSink for PanickingSink {
    type Reply = ReplyTo;

    fn committed(&self, _: Vec<(Stored, ReplyTo)>) {
        panic!("sink bug");
    }
    fn failed(&self, _: Vec<(NewMessage, ReplyTo)>, _: StoreError) {}
}

/// A writer thread that dies says so (health checks report it) and refuses further sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_writer_thread_is_reported_and_refuses_sends() {
    let store = Arc::new(AnyStore::connect("memory", true).await.unwrap());
    let (conv, _) = store.create_direct(a(), b()).await.unwrap();
    let writer = BatchWriter::spawn(store, BatchConfig::default(), PanickingSink);
    assert!(writer.is_alive());
    writer
        .try_submit(msg(conv.id, a(), None), ReplyTo::None)
        .unwrap();
    for _ in 0..200 {
        if !writer.is_alive() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!writer.is_alive(), "the writer thread died and says so");
    let refused = writer.try_submit(msg(conv.id, a(), None), ReplyTo::None);
    assert!(
        matches!(refused, Err(r) if r.stopped),
        "a dead writer refuses sends"
    );
}

/// A sink whose receiver holds one outcome at a time, through the writer's `Backlog`.
struct NarrowSink {
    tx: flume::Sender<Stored>,
    backlog: chatwire_store::batch::Backlog<Stored>,
}

impl NarrowSink {
    fn offer(&self, msg: Stored) -> chatwire_store::batch::Offer<Stored> {
        use chatwire_store::batch::Offer;
        match self.tx.try_send(msg) {
            Ok(()) => Offer::Taken,
            Err(flume::TrySendError::Full(m)) => Offer::Full(m),
            Err(flume::TrySendError::Disconnected(_)) => Offer::Gone,
        }
    }
}

impl CommitSink for NarrowSink {
    type Reply = ReplyTo;

    fn committed(&self, batch: Vec<(Stored, ReplyTo)>) {
        for (stored, _) in batch {
            self.backlog.send(0, stored, |_, m| self.offer(m));
        }
    }
    fn failed(&self, _: Vec<(NewMessage, ReplyTo)>, _: StoreError) {}
    fn backlog(&self) -> usize {
        self.backlog.len()
    }
    fn pump(&self) {
        self.backlog.pump(|_, m| self.offer(m));
    }
}

/// A receiver that stops taking outcomes never stops the writer: it keeps committing (one
/// message per batch here, so each commit is its own hand-over), the outcomes wait in order, and
/// past `max_backlog` the writer stops taking new sends (submitters are refused) instead of
/// waiting. Once the receiver reads again, every committed message arrives, in id order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_receiver_never_stops_the_writer() {
    let store = Arc::new(AnyStore::connect("memory", true).await.unwrap());
    let (conv, _) = store.create_direct(a(), b()).await.unwrap();
    let (tx, rx) = flume::bounded(1);
    let sink = NarrowSink {
        tx,
        backlog: chatwire_store::batch::Backlog::new(1),
    };
    let cfg = BatchConfig::default()
        .with_max_batch(1)
        .with_lanes(1)
        .with_queue_capacity(4)
        .with_max_backlog(20);
    let writer = BatchWriter::spawn(store.clone(), cfg, sink);
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..200 {
        match writer.try_submit(msg(conv.id, a(), Some(TempId::Int(i))), ReplyTo::None) {
            Ok(()) => accepted += 1,
            Err(r) => {
                assert!(!r.stopped);
                refused += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    // Nobody has read: everything accepted is committed anyway (the writer did not wait on
    // the receiver after its first outcome), and the backlog bound turned the rest away.
    let mut stored = 0;
    for _ in 0..500 {
        let page = store
            .history(
                conv.id,
                a(),
                chatwire_store::HistoryQuery {
                    before: None,
                    limit: 100,
                    search: None,
                },
            )
            .await
            .unwrap();
        stored = page.messages.len();
        if stored >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(stored >= 20, "the writer kept committing: {stored} stored");
    assert!(
        refused > 0,
        "past max_backlog the writer takes no new sends"
    );
    let mut ids = Vec::new();
    while ids.len() < accepted {
        let s = tokio::time::timeout(Duration::from_secs(10), rx.recv_async())
            .await
            .expect("every committed outcome is handed over")
            .unwrap();
        ids.push(s.message.id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order: {ids:?}");
    writer.flush_and_stop().await;
}

/// A commit that timed out but landed: its sender got `unavailable`; the retry with the same
/// tempId finds the row and must publish it as new (nobody has seen it), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_commit_that_landed_is_published_by_its_retry() {
    let (_db, store, conv) = pg_conversation().await;
    let pgs = pg_of(&store);
    let (writer, rx) = spawn_with(store.clone(), one_lane(Duration::from_millis(300)));
    // Another transaction holds an uncommitted row with the same idempotency key: the writer's
    // INSERT, already sent whole, waits on it inside the database past its deadline. When that
    // transaction rolls back, the database finishes the abandoned INSERT and commits it.
    let mut locker = pgs.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO messages (conversation_id, sender_type, sender_id, message_type, content, temp_id_key) \
         VALUES ($1, 1, 1, 'text', 'held', 's:t-1')", // a() is brand 1
    )
    .bind(conv)
    .execute(&mut *locker)
    .await
    .unwrap();
    let send = || msg(conv, a(), Some(TempId::Str("t-1".into())));
    writer.try_submit(send(), ReplyTo::None).unwrap();
    let (_, failed) = collect(&rx, 1).await;
    assert!(matches!(failed[0].1, StoreError::Unavailable(_)));
    locker.rollback().await.unwrap();
    // The abandoned statement goes on once the other row is gone, and lands.
    let mut landed = false;
    for _ in 0..200 {
        let page = store
            .history(
                conv,
                a(),
                chatwire_store::HistoryQuery {
                    before: None,
                    limit: 100,
                    search: None,
                },
            )
            .await
            .unwrap();
        if page.messages.len() == 1 {
            landed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        landed,
        "the timed-out insert committed after the other transaction ended"
    );
    writer.try_submit(send(), ReplyTo::None).unwrap();
    let (batches, _) = collect(&rx, 1).await;
    assert!(
        !batches[0][0].duplicate,
        "the retry publishes the row nobody was told about"
    );
    assert_plain_duplicate(&writer, &rx, send(), "a second retry is a plain duplicate").await;
    writer.flush_and_stop().await;
}

/// A commit attempt that fails and is retried by the writer itself: the sender is answered once,
/// by the attempt that stored the row, as new (it is published then); a later retry of the send
/// by the client is a plain duplicate, not published a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_stored_by_the_writers_own_retry_is_published_once() {
    let (db, store, conv) = pg_conversation().await;
    let pgs = pg_of(&store);
    // The writer's connections (opened at its first commit) cancel a statement after 100 ms:
    // while the conversation's row is locked below, every attempt fails as `unavailable`.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {} SET statement_timeout = '100ms'",
        db.name
    )))
    .execute(pgs.pool())
    .await
    .unwrap();
    let (writer, rx) = spawn_with(store.clone(), one_lane(Duration::from_secs(10)));
    let mut locker = pgs.pool().begin().await.unwrap();
    sqlx::query("SELECT id FROM conversations WHERE id = $1 FOR UPDATE")
        .bind(conv)
        .execute(&mut *locker)
        .await
        .unwrap();
    let send = || msg(conv, a(), Some(TempId::Str("t-1".into())));
    let started = std::time::Instant::now();
    writer.try_submit(send(), ReplyTo::None).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    locker.rollback().await.unwrap();
    let (batches, failed) = collect(&rx, 1).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "stored only once the lock was gone, by a retry"
    );
    assert!(!batches[0][0].duplicate, "stored and published as new");
    assert_plain_duplicate(
        &writer,
        &rx,
        send(),
        "the client's retry of a published send is a plain duplicate",
    )
    .await;
    writer.flush_and_stop().await;
}

/// A reply route that counts itself when dropped (a route that answers its sender when dropped
/// unanswered, as the server's does, tells the sender `unavailable` at that point).
struct CountsDrop(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for CountsDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Panics in `committed`, with reply routes that count their drops.
struct PanickingCountingSink;

impl CommitSink for PanickingCountingSink {
    type Reply = CountsDrop;

    fn committed(&self, _: Vec<(Stored, CountsDrop)>) {
        panic!("sink bug");
    }
    fn failed(&self, _: Vec<(NewMessage, CountsDrop)>, _: StoreError) {}
}

/// When the writer thread dies, every send it held (the batch in flight, the lanes and the
/// queue behind them) is let go of at once, so its reply route can answer `unavailable`; none is
/// left waiting in the queue of a writer that will never read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_writer_lets_go_of_every_send_it_held() {
    let store = Arc::new(AnyStore::connect("memory", true).await.unwrap());
    let (conv, _) = store.create_direct(a(), b()).await.unwrap();
    // One message per batch, one lane: most sends wait in the queue when the first commit dies.
    let cfg = BatchConfig::default().with_max_batch(1).with_lanes(1);
    let writer = BatchWriter::spawn(store, cfg, PanickingCountingSink);
    let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut accepted = 0usize;
    for _ in 0..200 {
        if writer
            .try_submit(msg(conv.id, a(), None), CountsDrop(dropped.clone()))
            .is_ok()
        {
            accepted += 1;
        }
    }
    assert!(accepted > 10, "accepted {accepted}");
    let t = std::time::Instant::now();
    while dropped.load(std::sync::atomic::Ordering::SeqCst) < 200
        && t.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!writer.is_alive(), "the writer died");
    assert_eq!(
        dropped.load(std::sync::atomic::Ordering::SeqCst),
        200,
        "every send let go of ({accepted} accepted, the rest refused)"
    );
}
