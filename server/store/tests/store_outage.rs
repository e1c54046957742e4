//! PostgreSQL outage under load: a TCP proxy (a tokio task) sits between the store and the
//! database; it is cut in the middle of a stream of sends and restored. Senders must get an answer
//! within the commit deadline while it is down (`unavailable` or a full queue), writes must resume
//! by themselves, and after clients retry what was not acknowledged (same tempId), the table holds
//! exactly the acknowledged messages, each once, and every acknowledgement published its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/support/pg.rs"]
mod pg;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatwire_store::batch::{BatchConfig, BatchWriter, CommitSink, WriterHandle};
use chatwire_store::{
    AnyStore, MessageType, NewMessage, Store, StoreError, Stored, TempId, UserKey, UserType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

/// A TCP proxy that can drop every connection and refuse new ones, or lose one answer.
struct Proxy {
    addr: String,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    /// Set: the next bytes the database sends are dropped with their connection.
    lose_answer: Arc<AtomicBool>,
    /// An answer was lost.
    lost: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (lose_answer, lost) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (up2, conns2) = (up.clone(), conns.clone());
        let (lose2, lost2) = (lose_answer.clone(), lost.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let (lose, lost) = (lose2.clone(), lost2.clone());
                let task = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = client.split();
                    let (mut from_server, mut to_server) = server.split();
                    let down = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = from_server.read(&mut buf).await?;
                            if n == 0 {
                                break Ok::<(), std::io::Error>(());
                            }
                            if carries_rows(&buf[..n]) && lose.swap(false, Ordering::SeqCst) {
                                // Both sockets close when this task ends.
                                lost.store(true, Ordering::SeqCst);
                                break Ok(());
                            }
                            to_client.write_all(&buf[..n]).await?;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy(&mut from_client, &mut to_server) => {}
                        _ = down => {}
                    }
                });
                conns2.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy {
            addr,
            up,
            conns,
            lose_answer,
            lost,
        }
    }

    /// Drops the next answer with rows the database sends, and its connection, as a network
    /// failure right after a commit would.
    fn lose_next_answer(&self) {
        self.lose_answer.store(true, Ordering::SeqCst);
    }

    fn lost_an_answer(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// True when these bytes from the database hold a row of a statement's answer (a `DataRow`
/// message), not only a connection's start, a ping's `ReadyForQuery` or a statement's description.
fn carries_rows(mut bytes: &[u8]) -> bool {
    while bytes.len() >= 5 {
        if bytes[0] == b'D' {
            return true;
        }
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        bytes = bytes.get(1 + len..).unwrap_or_default();
    }
    false
}

/// A waiter for one send's outcome, like a REST request.
#[derive(Debug)]
enum ReplyTo {
    Http(oneshot::Sender<Result<Stored, StoreError>>),
}

/// Answers each HTTP-style waiter, like the server's sink.
struct Sink;

impl CommitSink for Sink {
    type Reply = ReplyTo;

    fn committed(&self, batch: Vec<(Stored, ReplyTo)>) {
        for (s, r) in batch {
            let ReplyTo::Http(tx) = r;
            {
                let _ = tx.send(Ok(s));
            }
        }
    }
    fn failed(&self, batch: Vec<(NewMessage, ReplyTo)>, error: StoreError) {
        for (_, r) in batch {
            let ReplyTo::Http(tx) = r;
            {
                let _ = tx.send(Err(error.clone()));
            }
        }
    }
}

/// `(tempId number, answer, time to answer, time sent)` of one send.
type Record = (i64, Answer, Duration, Instant);

#[derive(Debug)]
enum Answer {
    /// Stored with this id; `true` when reported as new (published), `false` as a duplicate.
    Acked(i64, bool),
    Unavailable,
    QueueFull,
}

fn message(convs: &[i64], sender: UserKey, n: i64) -> NewMessage {
    let cid = convs[n as usize % convs.len()];
    NewMessage {
        conversation_id: cid,
        sender,
        message_type: MessageType::Text,
        content: format!("m{n}"),
        attachment_url: None,
        attachment_name: None,
        temp_id: Some(TempId::Int(n)),
    }
}

/// Sends one message and waits for its answer; returns it with the time it took.
async fn send(writer: WriterHandle<ReplyTo>, m: NewMessage) -> (Answer, Duration) {
    let started = Instant::now();
    let (tx, rx) = oneshot::channel();
    if writer
        .submit(m, ReplyTo::Http(tx), Duration::from_millis(10))
        .await
        .is_err()
    {
        return (Answer::QueueFull, started.elapsed());
    }
    let answer = match rx.await {
        Ok(Ok(stored)) => Answer::Acked(stored.message.id, !stored.duplicate),
        Ok(Err(StoreError::Unavailable(_))) => Answer::Unavailable,
        other => panic!("unexpected answer {other:?}"),
    };
    (answer, started.elapsed())
}

/// A fresh database, a proxy in front of it and a store that reaches it through the proxy.
async fn behind_proxy() -> (pg::TestDb, Proxy, Arc<AnyStore>) {
    let db = pg::TestDb::create().await;
    let proxy = Proxy::start(db.addr.clone()).await;
    let store = Arc::new(
        AnyStore::connect(&db.url_via(&proxy.addr), true)
            .await
            .unwrap(),
    );
    (db, proxy, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_loses_nothing_acked_and_duplicates_nothing() {
    let (db, proxy, store) = behind_proxy().await;
    let sender = UserKey::new(UserType::Brand, 1);
    // Four conversations, so batches are split over the writer's lanes.
    let mut convs = Vec::new();
    for i in 1..=4 {
        let (c, _) = store
            .create_direct(sender, UserKey::new(UserType::Influencer, i))
            .await
            .unwrap();
        convs.push(c.id);
    }
    let convs: Arc<[i64]> = convs.into();
    let deadline = Duration::from_secs(1);
    let cfg = BatchConfig::default()
        .with_commit_deadline(deadline)
        .with_queue_capacity(2000)
        .with_retry_backoff(Duration::from_millis(10));
    let writer = BatchWriter::spawn(store.clone(), cfg, Sink);

    // Load: ~10k sends/s from 50 senders that do not wait for answers (each send has its own
    // waiter task), for 4 s; the database is away from 0.7 s to 2.7 s, so the queue fills.
    let start = Instant::now();
    let stop_at = start + Duration::from_secs(4);
    let answers: Arc<Mutex<Vec<Record>>> = Arc::default();
    let mut senders = Vec::new();
    for s in 0..50i64 {
        let (writer, answers, convs) = (writer.clone(), answers.clone(), convs.clone());
        senders.push(tokio::spawn(async move {
            let mut n = s;
            let mut waiters = Vec::new();
            while Instant::now() < stop_at {
                let (writer, answers) = (writer.clone(), answers.clone());
                let m = message(&convs, sender, n);
                waiters.push(tokio::spawn(async move {
                    let sent_at = Instant::now();
                    let (answer, took) = send(writer, m).await;
                    answers.lock().unwrap().push((n, answer, took, sent_at));
                }));
                n += 50;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for w in waiters {
                w.await.unwrap();
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.cut();
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    let restored_at = Instant::now();
    for s in senders {
        s.await.unwrap();
    }

    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let acked_before = answers
        .iter()
        .filter(|(_, a, _, t)| matches!(a, Answer::Acked(..)) && *t < cut_at)
        .count();
    let refused_during: Vec<&Record> = answers
        .iter()
        .filter(|(_, a, _, t)| !matches!(a, Answer::Acked(..)) && *t >= cut_at && *t < restored_at)
        .collect();
    let acked_after = answers
        .iter()
        .filter(|(_, a, _, t)| matches!(a, Answer::Acked(..)) && *t > restored_at + deadline)
        .count();
    assert!(
        acked_before > 100,
        "load before the cut: {acked_before} acked"
    );
    assert!(!refused_during.is_empty(), "the outage was noticed");
    assert!(
        acked_after > 100,
        "writes resumed by themselves: {acked_after} acked after the restore"
    );
    let slowest = answers
        .iter()
        .filter(|(_, a, _, _)| !matches!(a, Answer::Acked(..)))
        .map(|(_, _, took, _)| *took)
        .max()
        .unwrap();
    assert!(
        slowest < deadline + Duration::from_millis(1500),
        "every refused sender heard back within the deadline: slowest {slowest:?}"
    );
    eprintln!(
        "sends {}, acked before cut {acked_before}, refused during outage {} (unavailable {}, queue full {}), \
         acked after restore {acked_after}, slowest refusal {slowest:?}",
        answers.len(),
        refused_during.len(),
        answers
            .iter()
            .filter(|(_, a, _, _)| matches!(a, Answer::Unavailable))
            .count(),
        answers
            .iter()
            .filter(|(_, a, _, _)| matches!(a, Answer::QueueFull))
            .count(),
    );

    // Clients retry every send that was not acknowledged, with the same tempId.
    // Acknowledged as duplicates: rows a failed attempt stored and nobody published.
    let mut unpublished: Vec<i64> = Vec::new();
    let mut acked: HashMap<i64, i64> = HashMap::new();
    let mut retry: Vec<i64> = Vec::new();
    for (n, a, _, _) in &answers {
        match a {
            Answer::Acked(id, published) => {
                assert!(acked.insert(*n, *id).is_none());
                if !published {
                    unpublished.push(*n);
                }
            }
            _ => retry.push(*n),
        }
    }
    while !retry.is_empty() {
        let mut still = Vec::new();
        for chunk in retry.chunks(1000) {
            let tasks: Vec<_> = chunk
                .iter()
                .map(|&n| {
                    (
                        n,
                        tokio::spawn(send(writer.clone(), message(&convs, sender, n))),
                    )
                })
                .collect();
            for (n, t) in tasks {
                match t.await.unwrap().0 {
                    Answer::Acked(id, published) => {
                        acked.insert(n, id);
                        if !published {
                            unpublished.push(n);
                        }
                    }
                    _ => still.push(n),
                }
            }
        }
        retry = still;
    }
    writer.flush_and_stop().await;

    // The table holds exactly the acknowledged messages, once each.
    let direct = AnyStore::connect(&db.url, false).await.unwrap();
    let AnyStore::Postgres(pg) = &direct else {
        unreachable!()
    };
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as("SELECT id, temp_id_key FROM messages")
        .fetch_all(pg.pool())
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        acked.len(),
        "rows stored == messages acknowledged"
    );
    let stored: HashMap<String, i64> = rows.into_iter().map(|(id, k)| (k.unwrap(), id)).collect();
    assert_eq!(stored.len(), acked.len(), "no duplicate rows");
    for (n, id) in &acked {
        assert_eq!(
            stored.get(&format!("n:{n}")),
            Some(id),
            "acked message {n} is stored with its id"
        );
    }
    let ids: HashSet<i64> = acked.values().copied().collect();
    assert_eq!(ids.len(), acked.len());
    // Each send is acknowledged once here, so each acknowledgement must publish its message:
    // a row stored by an attempt that failed (the cut fell between its commit and the answer)
    // is published by the attempt, or the client's retry, that finds it.
    assert!(
        unpublished.is_empty(),
        "acknowledged as duplicates, never delivered live: {unpublished:?}"
    );
}

/// The connection drops after the database committed a batch and before its answer arrived: the
/// writer retries, finds the row stored, and publishes it as new (its sender acknowledged once,
/// its recipients told), not as a duplicate nobody is told about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_was_lost_is_published_by_the_retry() {
    let (db, proxy, store) = behind_proxy().await;
    let sender = UserKey::new(UserType::Brand, 1);
    let (conv, _) = store
        .create_direct(sender, UserKey::new(UserType::Influencer, 1))
        .await
        .unwrap();
    let cfg = BatchConfig::default()
        .with_lanes(1)
        .with_retry_backoff(Duration::from_millis(10));
    let writer = BatchWriter::spawn(store.clone(), cfg, Sink);
    // The first send prepares the statement and caches the sender's profile: the next answer
    // the database sends is the next insert's.
    let (first, _) = send(writer.clone(), message(&[conv.id], sender, 1)).await;
    assert!(matches!(first, Answer::Acked(_, true)), "{first:?}");
    proxy.lose_next_answer();
    let (answer, _) = send(writer.clone(), message(&[conv.id], sender, 2)).await;
    assert!(proxy.lost_an_answer(), "the insert's answer was lost");
    assert!(
        matches!(answer, Answer::Acked(_, true)),
        "acknowledged and published as new: {answer:?}"
    );
    writer.flush_and_stop().await;
    let direct = AnyStore::connect(&db.url, false).await.unwrap();
    let AnyStore::Postgres(pg) = &direct else {
        unreachable!()
    };
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE temp_id_key = 'n:2'")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert_eq!(stored, 1, "stored once");
}
