//! `batch_writer`: message inserts into a real PostgreSQL through the BatchWriter, with each
//! PostgreSQL write path (plain `INSERT` per batch = the default, binary COPY, the
//! `INSERT ... ON CONFLICT ... RETURNING` statement) in the same run, against one INSERT per
//! message. Prints messages/s, commit latency p50/p99 per batch statement, the submit-to-commit
//! latency (what `message:sent` waits for) p50/p99, and the ratio.
//!
//! Uses the server on 127.0.0.1:5432 (user postgres, trust) or `CHATWIRE_BENCH_PG`
//! (an admin URL); creates a throwaway database and drops it at the end.
//! Knobs: `BENCH_MESSAGES` (writer run, default 300000), `BENCH_SINGLE` (baseline run, default 20000),
//! `BENCH_SINGLE_CONCURRENCY` (default 8), `BENCH_BATCH` (max batch size, default the server's, 2048), `BENCH_LANES`
//! (parallel commit connections of the second set of runs, default 1, 0 for none; the first
//! uses the writer's default, 2), `BENCH_PACE` (messages/s of the paced latency runs, default 30000),
//! `BENCH_PACE_SECS` (their length, default 10), `BENCH_ONLY` (run only the runs whose label
//! contains this text, e.g. `paced` or `INSERT`), `BENCH_PREFILL` (rows already in `messages`
//! when each run starts, default 0: every run starts from an empty table).
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatwire::store::batch::{
    BatchConfig, BatchWriter, CommitSink, METRIC_BATCH_SIZE, METRIC_COMMIT_SECONDS,
};
use chatwire::store::postgres::WritePath;
use chatwire::store::{
    AnyStore, MessageType, NewMessage, StoreError, Stored, TempId, UserKey, UserType,
};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

const CONVERSATIONS: i64 = 1000;

/// Keeps every sample of the writer's histograms.
#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

#[derive(Default)]
struct Capture {
    commit: Arc<Samples>,
    batch: Arc<Samples>,
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match key.name() {
            METRIC_COMMIT_SECONDS => Histogram::from_arc(self.commit.clone()),
            METRIC_BATCH_SIZE => Histogram::from_arc(self.batch.clone()),
            _ => Histogram::noop(),
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn message(i: usize) -> NewMessage {
    let conv = (i as i64 % CONVERSATIONS) + 1;
    NewMessage {
        conversation_id: conv,
        sender: UserKey::new(
            if i.is_multiple_of(2) {
                UserType::Brand
            } else {
                UserType::Influencer
            },
            conv,
        ),
        message_type: MessageType::Text,
        content: format!("benchmark message number {i}, hello there"),
        attachment_url: None,
        attachment_name: None,
        temp_id: Some(TempId::Str(format!("bench-{i}"))),
    }
}

/// Counts committed messages, records each one's submit-to-commit latency, wakes the producer.
struct CountingSink {
    done: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    /// Submit time of message `offset + k` (ns since `base`), at index k.
    sent: Arc<Vec<AtomicU64>>,
    base: Instant,
    offset: usize,
    latencies: Arc<Mutex<Vec<f64>>>,
}

impl CommitSink for CountingSink {
    /// Nobody waits for a benched send.
    type Reply = ();

    fn committed(&self, batch: Vec<(Stored, ())>) {
        let now = self.base.elapsed().as_nanos() as u64;
        let mut lat = self.latencies.lock().unwrap();
        for (stored, _) in &batch {
            if let Some(TempId::Str(t)) = &stored.message.temp_id
                && let Some(k) = t
                    .strip_prefix("bench-")
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| n.checked_sub(self.offset))
                && let Some(at) = self.sent.get(k)
            {
                lat.push(now.saturating_sub(at.load(Ordering::Acquire)) as f64 / 1e9);
            }
        }
        self.done.fetch_add(batch.len(), Ordering::Release);
    }
    fn failed(&self, batch: Vec<(NewMessage, ())>, error: StoreError) {
        eprintln!("batch of {} failed: {error}", batch.len());
        self.failed.fetch_add(batch.len(), Ordering::Release);
    }
}

async fn setup(admin: &str) -> (String, String) {
    let name = format!("chatwire_bench_{}", std::process::id());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    (format!("{base}/{name}"), name)
}

async fn seed(store: &AnyStore) {
    let AnyStore::Postgres(pg) = store else {
        unreachable!()
    };
    for sql in [
        "INSERT INTO users (user_type, id, username) SELECT t, g, 'u' || t || '_' || g
         FROM generate_series(1, 1000) g, (VALUES (1::int2), (2::int2)) v(t)",
        "INSERT INTO conversations (id, type, direct_key)
         SELECT g, 'direct', '1:' || g || '|2:' || g FROM generate_series(1, 1000) g",
        "SELECT setval('conversations_id_seq', 1000)",
        "INSERT INTO participants (conversation_id, user_type, user_id)
         SELECT g, t, g FROM generate_series(1, 1000) g, (VALUES (1::int2), (2::int2)) v(t)",
        "VACUUM ANALYZE",
    ] {
        sqlx::query(sql).execute(pg.pool()).await.unwrap();
    }
}

/// One writer run's figures.
struct Run {
    label: String,
    rate: f64,
    /// Submit-to-commit latency of every message (what `message:sent` waits for), sorted.
    latencies: Vec<f64>,
}

/// The writer: producer on this thread, writer on its own. Messages `offset..offset + n` (each
/// run its own tempIds, so no run replays another's); `pace` = messages/s (None = as fast as
/// the queue takes them).
fn run_writer(
    store: Arc<AnyStore>,
    n: usize,
    lanes: usize,
    offset: usize,
    pace: Option<f64>,
) -> (f64, Vec<f64>, usize) {
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let base = Instant::now();
    let sink = CountingSink {
        done: done.clone(),
        failed: failed.clone(),
        sent: sent.clone(),
        base,
        offset,
        latencies: latencies.clone(),
    };
    let cfg = BatchConfig::default()
        .with_max_batch(env_usize("BENCH_BATCH", BatchConfig::default().max_batch))
        .with_lanes(lanes);
    let writer = BatchWriter::spawn(store, cfg, sink);
    // Warm-up, not counted: the writer thread is new, so are its runtime and its database
    // connections (a server's writer lives as long as the process). Messages `offset + n..`.
    let warm = 4 * CONVERSATIONS as usize;
    for i in 0..warm {
        let mut m = message(offset + n + i);
        while let Err(r) = writer.try_submit(m, ()) {
            m = r.message;
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    while done.load(Ordering::Acquire) + failed.load(Ordering::Acquire) < warm {
        std::thread::sleep(Duration::from_micros(200));
    }
    done.fetch_sub(warm.min(done.load(Ordering::Acquire)), Ordering::AcqRel);
    failed.store(0, Ordering::Release);
    let messages: Vec<NewMessage> = (0..n).map(|i| message(i + offset)).collect();
    let start = Instant::now();
    for (k, m) in messages.into_iter().enumerate() {
        if let Some(rate) = pace {
            let due = start + Duration::from_secs_f64(k as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let mut m = m;
        loop {
            sent[k].store(base.elapsed().as_nanos() as u64, Ordering::Release);
            match writer.try_submit(m, ()) {
                Ok(()) => break,
                Err(r) => {
                    m = r.message;
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
    }
    while done.load(Ordering::Acquire) + failed.load(Ordering::Acquire) < n {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = start.elapsed();
    // A loaded machine can push a commit past the writer's deadline: reported, not hidden.
    let failed = failed.load(Ordering::Acquire);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(writer.flush_and_stop());
    let lat = sorted(std::mem::take(&mut *latencies.lock().unwrap()));
    ((n - failed) as f64 / elapsed.as_secs_f64(), lat, failed)
}

/// The baseline: one INSERT statement per message, `concurrency` connections.
async fn run_single(url: &str, n: usize, concurrency: usize) -> (f64, Vec<f64>) {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(concurrency as u32)
        .connect(url)
        .await
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (pool, next) = (pool.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return lat;
                }
                let m = message(i);
                let t = Instant::now();
                sqlx::query(
                    "INSERT INTO messages (conversation_id, sender_type, sender_id, message_type, content, temp_id_key)
                     SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM participants
                         WHERE conversation_id = $1 AND user_type = $2 AND user_id = $3)
                     ON CONFLICT (sender_type, sender_id, conversation_id, temp_id_key) WHERE temp_id_key IS NOT NULL DO NOTHING
                     RETURNING id, created_at",
                )
                .bind(m.conversation_id)
                .bind(if m.sender.user_type == UserType::Brand { 1i16 } else { 2i16 })
                .bind(m.sender.id)
                .bind(m.message_type.as_str())
                .bind(&m.content)
                .bind(format!("s:bench-{i}"))
                .fetch_optional(&pool)
                .await
                .unwrap();
                lat.push(t.elapsed().as_secs_f64());
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    pool.close().await;
    (rate, sorted(lat))
}

/// Gives every run the same start: waits (at most 10 s) until no other statement runs in the
/// bench database (a commit the writer gave up on keeps running in the server), empties
/// `messages` and checkpoints, so no run pays for the table, the index growth or the dirty pages
/// the runs before it left.
async fn settle(pool: &sqlx::PgPool) {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
               AND state = 'active' AND pid <> pg_backend_pid()",
        )
        .fetch_one(pool)
        .await
        .unwrap_or(0);
        if busy == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let prefill = format!(
        "INSERT INTO messages (conversation_id, sender_type, sender_id, message_type, content, temp_id_key)
         SELECT g % {CONVERSATIONS} + 1, g % 2 + 1, g % {CONVERSATIONS} + 1, 'text',
                'earlier message number ' || g, 's:earlier-' || g
         FROM generate_series(1, {}) g",
        env_usize("BENCH_PREFILL", 0)
    );
    for sql in ["TRUNCATE messages", &prefill, "CHECKPOINT"] {
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await {
            eprintln!("{sql}: {e}");
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; filters are not supported, any other run still measures.
    let capture = Capture::default();
    let (commit, batch) = (capture.commit.clone(), capture.batch.clone());
    metrics::set_global_recorder(capture).unwrap();
    let n = env_usize("BENCH_MESSAGES", 300_000);
    let single_n = env_usize("BENCH_SINGLE", 20_000);
    let concurrency = env_usize("BENCH_SINGLE_CONCURRENCY", 8);
    let admin = std::env::var("CHATWIRE_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (url, name) = rt.block_on(setup(&admin));
    let store = Arc::new(rt.block_on(AnyStore::connect(&url, true)).unwrap());
    rt.block_on(seed(&store));
    println!("batch_writer/postgres: {n} messages per writer run");

    // Warm-up (plans, caches, table growth), then the measured runs, COPY path and the
    // `ON CONFLICT` statement alternately: the server's default lanes (2, each batch split by
    // conversation), then `BENCH_LANES` (default 1: one statement per batch); then both paths
    // paced at `BENCH_PACE` messages/s (default 30000) for the submit-to-commit latency.
    let AnyStore::Postgres(pg) = &*store else {
        unreachable!()
    };
    let default_lanes = BatchConfig::default().lanes;
    let mut offset = 1_000_000;
    let mut next_offset = || {
        offset += 10_000_000;
        offset
    };
    let paths = [WritePath::Insert, WritePath::Copy, WritePath::Statement];
    for path in paths {
        pg.set_write_path(path);
        run_writer(store.clone(), 100_000, default_lanes, next_offset(), None);
    }
    let pace = env_usize("BENCH_PACE", 30_000) as f64;
    let paced_n = (pace * env_usize("BENCH_PACE_SECS", 10) as f64) as usize;
    let mut runs = Vec::new();
    let mut plans = Vec::new();
    // `BENCH_LANES=0`: the default lanes only (the short form of `make bench`).
    let mut lane_sets = vec![default_lanes];
    let other_lanes = env_usize("BENCH_LANES", 1);
    if other_lanes != 0 && other_lanes != default_lanes {
        lane_sets.push(other_lanes);
    }
    for lanes in lane_sets {
        for path in paths {
            plans.push((lanes, path, None));
        }
    }
    for path in paths {
        plans.push((default_lanes, path, Some(pace)));
    }
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for (lanes, path, paced) in plans {
        let path_name = match path {
            WritePath::Insert => "INSERT   ",
            WritePath::Copy => "COPY     ",
            WritePath::Statement => "ON CONFL.",
        };
        let label = match paced {
            None => format!("BatchWriter {path_name}, {lanes} lane(s)"),
            Some(p) => format!("paced {p:.0}/s {path_name}, {lanes} lane(s)"),
        };
        if !label.contains(only.as_str()) {
            continue;
        }
        rt.block_on(settle(pg.pool()));
        pg.set_write_path(path);
        commit.0.lock().unwrap().clear();
        batch.0.lock().unwrap().clear();
        let count = if paced.is_some() { paced_n } else { n };
        let (rate, latencies, failed) =
            run_writer(store.clone(), count, lanes, next_offset(), paced);
        let commits = sorted(std::mem::take(&mut *commit.0.lock().unwrap()));
        let sizes = std::mem::take(&mut *batch.0.lock().unwrap());
        let mean = sizes.iter().sum::<f64>() / sizes.len().max(1) as f64;
        println!(
            "  {label} {rate:>8.0} messages/s   commit p50 {:>6.2} p99 {:>6.2} max {:>6.2} ms   sent p50 {:>6.2} p99 {:>6.2} max {:>7.2} ms   ({} commits, mean {mean:.0} messages{})",
            percentile(&commits, 0.5) * 1e3,
            percentile(&commits, 0.99) * 1e3,
            percentile(&commits, 1.0) * 1e3,
            percentile(&latencies, 0.5) * 1e3,
            percentile(&latencies, 0.99) * 1e3,
            percentile(&latencies, 1.0) * 1e3,
            commits.len(),
            if failed > 0 {
                format!(", {failed} FAILED")
            } else {
                String::new()
            },
        );
        runs.push(Run {
            label,
            rate,
            latencies,
        });
    }
    let (single_rate, single_lat) = rt.block_on(run_single(&url, single_n, concurrency));

    println!(
        "  INSERT/message        {:>10.0} messages/s   commit p50 {:>7.2} ms  p99 {:>7.2} ms   ({single_n} messages, {concurrency} connections)",
        single_rate,
        percentile(&single_lat, 0.5) * 1e3,
        percentile(&single_lat, 0.99) * 1e3,
    );
    let best = runs
        .iter()
        .filter(|r| r.label.starts_with("BatchWriter"))
        .map(|r| r.rate)
        .fold(0.0, f64::max);
    if let Some(first) = runs.first() {
        println!(
            "  ratio ({} / INSERT per message) {:>6.1}x",
            first.label.trim_end(),
            first.rate / single_rate
        );
    }
    println!(
        "  bar >= 150000 messages/s: {} (best {best:.0})",
        if best >= 150_000.0 { "met" } else { "NOT met" }
    );
    if let Some(paced) = runs.iter().find(|r| r.label.starts_with("paced")) {
        let p99 = percentile(&paced.latencies, 0.99) * 1e3;
        println!(
            "  bar sent p99 <= 20 ms at {pace:.0}/s: {} ({p99:.2} ms)",
            if p99 <= 20.0 { "met" } else { "NOT met" }
        );
    }
    drop(store);
    rt.block_on(async {
        if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    });
}
