//! The goose scenario: one goose user per simulated chat user.
//!
//! - on start, `connect`: connect (WebSocket, or polling then upgrade), wait for
//!   `connection:success`, join the conversation, then wait at the start barrier;
//! - repeated, `round`: `typing:start`, a pause, `message:send` (content carries the send time),
//!   wait for `message:sent`, `typing:stop`, `message:read`, paced at `--rate` per user;
//! - on stop, `disconnect`: wait until every user stopped sending plus the drain time, close,
//!   and merge the user's histograms into the run.
//!
//! Goose gets one request per connect, join and `message:sent`, and per round the largest
//! delivery latency the user saw (`message:new max/round`), so its reports carry all four without
//! one goose request per delivery.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use goose::prelude::*;
use rand::RngExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::conn::{self, Command, Shared, TaskCtx};
use crate::ctx::{Ctx, UserEnd};
use crate::net;
use crate::stats::{Live, UserStats};
use crate::wire;

/// goose's method label for our requests.
const METHOD: &str = "WS";

/// One user's state between transactions (goose session data).
#[derive(Clone)]
struct Session(Arc<SessionInner>);

/// See [`Session`].
struct SessionInner {
    /// The user's conversation.
    conversation: i64,
    /// Commands to the connection task (`None` when connecting failed).
    tx: Option<mpsc::Sender<Command>>,
    /// The connection task, returning the user's stats.
    task: Mutex<Option<JoinHandle<UserStats>>>,
    /// Values the connection task updates.
    shared: Arc<Shared>,
    /// Next tempId (starts at the run's first tempId, so runs never repeat one).
    seq: AtomicU64,
    /// When the next message is due.
    next_send: Mutex<Option<Instant>>,
    /// Whether this user already counted itself as done sending.
    finished: AtomicBool,
    /// Whether goose was told this user is done (goose ends the run once every user is).
    told_goose: AtomicBool,
    /// The user's id (message content).
    user_id: u64,
}

impl SessionInner {
    /// Counts this user as done sending, once.
    fn finish(&self, ctx: &Ctx) {
        if !self.finished.swap(true, Ordering::AcqRel) {
            ctx.finished.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Tells goose this user has nothing left to do; goose ends the run (and calls every user's
/// on-stop transaction) once all users did.
fn tell_goose_done(user: &GooseUser, sess: &SessionInner) {
    if !sess.told_goose.swap(true, Ordering::AcqRel)
        && let Some(channel) = &user.shutdown_channel
    {
        let _ = channel.send(user.weighted_users_index);
    }
}

/// A goose transaction function that gets the run's [`Ctx`].
type CtxFn = for<'r> fn(
    &'r mut GooseUser,
    Arc<Ctx>,
) -> Pin<Box<dyn Future<Output = TransactionResult> + Send + 'r>>;

/// Wraps `f` into a goose transaction named `name`.
fn transaction(ctx: &Arc<Ctx>, name: &str, f: CtxFn) -> Transaction {
    let ctx = Arc::clone(ctx);
    let func: TransactionFunction = Arc::new(move |user| f(user, Arc::clone(&ctx)));
    Transaction::new(func).set_name(name)
}

/// The chat scenario for `ctx`.
pub fn scenario(ctx: &Arc<Ctx>) -> Scenario {
    scenario!("chat")
        .register_transaction(
            transaction(ctx, "connect", |u, c| Box::pin(connect(u, c))).set_on_start(),
        )
        .register_transaction(transaction(ctx, "round", |u, c| Box::pin(round(u, c))))
        .register_transaction(
            transaction(ctx, "disconnect", |u, c| Box::pin(disconnect(u, c))).set_on_stop(),
        )
}

/// A goose error from a message.
fn fail(message: impl Into<String>) -> Box<TransactionError> {
    Box::new(TransactionError::Custom(message.into()))
}

/// Short error code for a connect failure.
fn connect_error_code(e: &anyhow::Error) -> String {
    let text = e.to_string();
    if let Some(rest) = text.strip_prefix("connect_error: ") {
        return format!("connect_error:{rest}");
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("address not available") || lower.contains("addrnotavail") {
        "no_source_port".into()
    } else if lower.contains("refused") {
        "connection_refused".into()
    } else if lower.contains("too many open files") {
        "too_many_open_files".into()
    } else {
        "connect_failed".into()
    }
}

/// on start: connect, join, wait at the barrier.
async fn connect(user: &mut GooseUser, ctx: Arc<Ctx>) -> TransactionResult {
    let index = user.weighted_users_index as u64 % ctx.settings.users.max(1);
    let s = &ctx.settings;
    let me = s.user(index);
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let token = s
        .credentials
        .token(me, now_unix)
        .map_err(|e| fail(e.to_string()))?;
    let source = s.source_ip(index);
    let node = s.target_of(index);
    let started = Instant::now();
    let attempt = async {
        if s.uses_polling(index) {
            let http = ctx
                .http_for(index)
                .ok_or_else(|| anyhow::anyhow!("no http client"))?;
            net::connect_polling(node, http, source, &token).await
        } else {
            net::connect_websocket(node, source, &token).await
        }
    };
    let connected = match tokio::time::timeout(s.target.timeout, attempt).await {
        Ok(Ok(c)) => c,
        outcome => {
            let code = match outcome {
                Ok(Err(e)) => connect_error_code(&e),
                _ => "connect_timeout".into(),
            };
            Live::add(&ctx.live.connect_failures, 1);
            ctx.live.error(&code);
            let _ = user
                .record_custom_request_duration(
                    METHOD,
                    "connect",
                    started.elapsed(),
                    false,
                    None,
                    Some(&code),
                )
                .await;
            give_up(user, &ctx);
            return Ok(());
        }
    };
    let elapsed = started.elapsed();
    if let Ok(mut run) = ctx.run.lock() {
        crate::stats::record(&mut run.connect, conn::micros(elapsed));
    }
    Live::add(&ctx.live.connected, 1);
    user.record_custom_request_duration(METHOD, "connect", elapsed, true, None, None)
        .await?;

    let (tx, rx) = mpsc::channel(conn::COMMAND_QUEUE);
    let shared = Arc::new(Shared::default());
    let members = ctx.members_of(index);
    let task_ctx = TaskCtx {
        live: Arc::clone(&ctx.live),
        room_members: Arc::clone(&members),
        shared: Arc::clone(&shared),
    };
    let task = tokio::spawn(conn::run(
        connected.ws,
        connected.wire,
        connected.early,
        rx,
        task_ctx,
    ));

    let conversation = ctx.conversation_of(index);
    let frame = wire::event(
        &s.target.namespace,
        "conversation:join",
        simd_json::json!({ "conversationId": conversation }),
    );
    let joined = request(
        &tx,
        frame,
        "conversation:joined",
        "conversation:error",
        s.reply_timeout,
    )
    .await;
    match joined {
        Ok(latency) => {
            members.fetch_add(1, Ordering::AcqRel);
            Live::add(&ctx.live.joined, 1);
            if let Ok(mut run) = ctx.run.lock() {
                crate::stats::record(&mut run.join, conn::micros(latency));
            }
            user.record_custom_request_duration(
                METHOD,
                "conversation:join",
                latency,
                true,
                None,
                None,
            )
            .await?;
        }
        Err(code) => {
            ctx.live.error(&code);
            Live::add(&ctx.live.connect_failures, 1);
            let _ = user
                .record_custom_request_duration(
                    METHOD,
                    "conversation:join",
                    s.reply_timeout,
                    false,
                    None,
                    Some(&code),
                )
                .await;
        }
    }
    let session = Session(Arc::new(SessionInner {
        conversation,
        tx: Some(tx),
        task: Mutex::new(Some(task)),
        shared,
        seq: AtomicU64::new(ctx.first_temp_id),
        next_send: Mutex::new(None),
        finished: AtomicBool::new(false),
        told_goose: AtomicBool::new(false),
        user_id: me.id,
    }));
    user.set_session_data(session.clone());
    ctx.on_end(session.0.clone());
    ctx.mark_ready();

    // Start barrier, then a random offset inside the first period so sends spread out.
    let start = ctx.wait_send_start().await;
    let period = period(s.rate);
    let offset = period.mul_f64(rand::rng().random_range(0.0..1.0));
    if let Ok(mut next) = session.0.next_send.lock() {
        *next = Some(start + offset);
    }
    Ok(())
}

/// Marks a user that could not connect as ready and done, with no connection.
fn give_up(user: &mut GooseUser, ctx: &Ctx) {
    let session = Session(Arc::new(SessionInner {
        conversation: 0,
        tx: None,
        task: Mutex::new(None),
        shared: Arc::new(Shared::default()),
        seq: AtomicU64::new(1),
        next_send: Mutex::new(None),
        finished: AtomicBool::new(false),
        told_goose: AtomicBool::new(false),
        user_id: 0,
    }));
    session.0.finish(ctx);
    user.set_session_data(session);
    ctx.mark_ready();
}

/// Time between a user's messages.
fn period(rate: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate.max(0.001))
}

/// Sends a request frame and waits for its reply event.
async fn request(
    tx: &mpsc::Sender<Command>,
    frame: String,
    event: &'static str,
    error_event: &'static str,
    timeout: Duration,
) -> Result<Duration, String> {
    let (reply, rx) = oneshot::channel();
    tx.send(Command::Request {
        frame,
        event,
        error_event,
        reply,
    })
    .await
    .map_err(|_| "connection_lost".to_owned())?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err("connection_lost".into()),
        Err(_) => Err("timeout".into()),
    }
}

/// One message round, paced at the user's rate; idle once the send phase is over.
async fn round(user: &mut GooseUser, ctx: Arc<Ctx>) -> TransactionResult {
    let Some(session) = user.get_session_data::<Session>().cloned() else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Ok(());
    };
    let sess = &session.0;
    let s = &ctx.settings;
    let Some(tx) = sess.tx.clone() else {
        tell_goose_done(user, sess);
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Ok(());
    };
    let Some(end) = ctx.send_end() else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Ok(());
    };
    let now = Instant::now();
    let period = period(s.rate);
    let due = sess.next_send.lock().ok().and_then(|n| *n).unwrap_or(now);
    // A user that fell more than a period behind skips the missed slots instead of bursting.
    let due = if due + period < now { now } else { due };
    if due >= end || s.idle {
        if s.idle && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
        sess.finish(&ctx);
        tell_goose_done(user, sess);
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Ok(());
    }
    let nsp = &s.target.namespace;
    let conversation = simd_json::json!({ "conversationId": sess.conversation });
    if s.typing {
        tokio::time::sleep_until(due.checked_sub(s.typing_pause).unwrap_or(due).into()).await;
        let _ = tx
            .send(Command::Emit(wire::event(
                nsp,
                "typing:start",
                conversation.clone(),
            )))
            .await;
    }
    tokio::time::sleep_until(due.into()).await;

    let seq = sess.seq.fetch_add(1, Ordering::Relaxed);
    let payload = simd_json::json!({
        "conversationId": sess.conversation,
        "content": conn::content(sess.user_id, seq, s.pad),
        "tempId": seq,
    });
    let (reply, rx) = oneshot::channel();
    Live::add(&ctx.live.sends, 1);
    let sent = match tx
        .send(Command::Send {
            frame: wire::event(nsp, "message:send", payload),
            temp_id: seq,
            reply,
        })
        .await
    {
        Err(_) => Err("connection_lost".to_owned()),
        Ok(()) => match tokio::time::timeout(s.reply_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("connection_lost".into()),
            Err(_) => {
                ctx.live.error("sent_timeout");
                Err("sent_timeout".into())
            }
        },
    };
    if let Ok(mut next) = sess.next_send.lock() {
        *next = Some(due + period);
    }
    match sent {
        Ok(latency) => {
            user.record_custom_request_duration(METHOD, "message:sent", latency, true, None, None)
                .await?;
        }
        Err(code) => {
            let _ = user
                .record_custom_request_duration(
                    METHOD,
                    "message:sent",
                    due.elapsed(),
                    false,
                    None,
                    Some(&code),
                )
                .await;
        }
    }
    if s.typing {
        let _ = tx
            .send(Command::Emit(wire::event(
                nsp,
                "typing:stop",
                conversation.clone(),
            )))
            .await;
    }
    if s.read {
        let last = sess.shared.last_message_id.load(Ordering::Relaxed);
        let payload = if last > 0 {
            simd_json::json!({ "conversationId": sess.conversation, "messageId": last })
        } else {
            conversation
        };
        let _ = tx
            .send(Command::Emit(wire::event(nsp, "message:read", payload)))
            .await;
    }
    let max_us = sess.shared.round_max_us.swap(0, Ordering::Relaxed);
    if max_us > 0 {
        user.record_custom_request_duration(
            METHOD,
            "message:new max/round",
            Duration::from_micros(max_us),
            true,
            None,
            None,
        )
        .await?;
    }
    Ok(())
}

/// on stop: wait for every user to stop sending, drain (see `Ctx::drained`), close, merge the stats.
async fn disconnect(user: &mut GooseUser, ctx: Arc<Ctx>) -> TransactionResult {
    let Some(session) = user.get_session_data::<Session>().cloned() else {
        return Ok(());
    };
    let sess = &session.0;
    sess.finish(&ctx);
    let s = &ctx.settings;
    let give_up_at = Instant::now() + s.drain + s.reply_timeout + Duration::from_secs(5);
    while ctx.finished.load(Ordering::Acquire) < ctx.ready.load(Ordering::Acquire)
        && Instant::now() < give_up_at
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ctx.drained().await;
    sess.end(&ctx).await;
    Ok(())
}

impl UserEnd for SessionInner {
    /// Closes the connection and merges the user's stats into the run (once: the connection
    /// task's handle is taken).
    fn end<'a>(&'a self, ctx: &'a Ctx) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let task = self.task.lock().ok().and_then(|mut t| t.take());
            let Some(task) = task else {
                return;
            };
            if let Some(tx) = &self.tx {
                let _ = tx.send(Command::Close).await;
            }
            if let Ok(stats) = task.await
                && let Ok(mut run) = ctx.run.lock()
            {
                run.merge_user(&stats);
            }
        })
    }
}
