//! The run's shared state: scenario settings, conversations, the start barrier and the stats.
//!
//! Timeline of a run: users connect and join (goose ramps them up); once every user is ready
//! (or the barrier times out) the send phase starts for `duration`; then no one sends while the
//! last replies and deliveries arrive (the drain: until all did, at most `drain`); then users
//! disconnect and hand in their stats.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use crate::net::Target;
use crate::stats::{Live, RunStats};
use crate::token::{Credentials, User};

/// How conversations come to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SeedMode {
    /// Created over chatwire's REST API before the run (`POST /api/chat/conversations`).
    Rest,
    /// By convention: conversation id = user_index / room_size + 1 (peers have no REST).
    None,
}

/// What the simulated users do (all from the command line).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Server to connect to (the first node: REST seeding, namespace, timeouts).
    pub target: Target,
    /// Further nodes of a fleet (`-H a,b,c`): the user at index k connects to node k mod n of
    /// `[target, more_targets...]`, so the members of one room (consecutive indices) sit on
    /// different nodes and every room broadcast crosses the nodes' adapter. Empty for one node.
    pub more_targets: Vec<Target>,
    /// Base URL for REST seeding (`http://host:port`).
    pub base_url: String,
    /// Id of the first user; users are `first_user_id ..`.
    pub first_user_id: u64,
    /// Number of users this process drives.
    pub users: u64,
    /// Members per conversation (2 = 1:1).
    pub room_size: u64,
    /// Messages per second per user.
    pub rate: f64,
    /// Pause between `typing:start` and `message:send`.
    pub typing_pause: Duration,
    /// Send `typing:start` / `typing:stop` around each message.
    pub typing: bool,
    /// Send `message:read` after each message.
    pub read: bool,
    /// Hold the connections without sending (memory per idle connection).
    pub idle: bool,
    /// Extra bytes of content per message.
    pub pad: usize,
    /// Length of the send phase.
    pub duration: Duration,
    /// Longest wait after the send phase for in-flight replies and deliveries (the drain ends
    /// as soon as all arrived).
    pub drain: Duration,
    /// Longest wait for every user to be ready before sending starts anyway.
    pub barrier_timeout: Duration,
    /// Longest wait for a reply (`message:sent`, `conversation:joined`).
    pub reply_timeout: Duration,
    /// Share of users that start on HTTP long-polling and upgrade (0.0 ..= 1.0).
    pub polling_share: f64,
    /// Source addresses to spread connections over (empty = the kernel's choice).
    pub source_ips: Vec<IpAddr>,
    /// Dev tokens or JWTs.
    pub credentials: Credentials,
    /// How conversations are set up.
    pub seed: SeedMode,
}

impl Settings {
    /// Number of conversations this process's users fill.
    pub fn conversations(&self) -> u64 {
        self.users.div_ceil(self.room_size.max(1))
    }

    /// The user at goose index `index`.
    pub fn user(&self, index: u64) -> User {
        User::at(self.first_user_id, index)
    }

    /// Node the user at `index` connects to: node `index mod n` of `[target, more_targets...]`.
    pub fn target_of(&self, index: u64) -> &Target {
        let n = self.more_targets.len() as u64 + 1;
        match usize::try_from(index % n) {
            Ok(0) | Err(_) => &self.target,
            Ok(k) => self.more_targets.get(k - 1).unwrap_or(&self.target),
        }
    }

    /// Conversation slot (0-based, within this process) of the user at `index`.
    pub fn slot(&self, index: u64) -> u64 {
        index / self.room_size.max(1)
    }

    /// Conversation id by convention (`--seed none`): rooms line up across processes whose
    /// ranges start at multiples of the room size.
    pub fn conventional_id(&self, index: u64) -> i64 {
        let global = self.first_user_id.saturating_sub(1) + index;
        i64::try_from(global / self.room_size.max(1) + 1).unwrap_or(i64::MAX)
    }

    /// Whether every member of this process's rooms is one of its users: then its own counts
    /// tell when every delivery arrived. Seeded over REST, a process's rooms are its own; by
    /// convention, when its range starts and ends at multiples of the room size.
    pub fn rooms_are_own(&self) -> bool {
        let room = self.room_size.max(1);
        self.seed == SeedMode::Rest
            || (self.first_user_id.saturating_sub(1).is_multiple_of(room)
                && self.users.is_multiple_of(room))
    }

    /// Whether the user at `index` starts on polling.
    pub fn uses_polling(&self, index: u64) -> bool {
        let share = self.polling_share.clamp(0.0, 1.0);
        // Spread evenly: user i polls when floor((i+1)*share) > floor(i*share).
        ((index + 1) as f64 * share).floor() > (index as f64 * share).floor()
    }

    /// Source address for the user at `index` (round robin).
    pub fn source_ip(&self, index: u64) -> Option<IpAddr> {
        if self.source_ips.is_empty() {
            return None;
        }
        let n = self.source_ips.len() as u64;
        self.source_ips
            .get(usize::try_from(index % n).unwrap_or(0))
            .copied()
    }
}

#[cfg(test)]
impl Settings {
    /// Settings for unit tests: `users` from id `first` in rooms of `room`, a server at port 1
    /// (nothing listens there).
    pub(crate) fn for_tests(users: u64, room: u64, first: u64) -> Self {
        Settings {
            target: Target {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
                host: "127.0.0.1:1".into(),
                namespace: "/chat".into(),
                timeout: Duration::from_secs(1),
            },
            more_targets: vec![],
            base_url: "http://127.0.0.1:1".into(),
            first_user_id: first,
            users,
            room_size: room,
            rate: 1.0,
            typing_pause: Duration::ZERO,
            typing: true,
            read: true,
            idle: false,
            pad: 0,
            duration: Duration::from_secs(1),
            drain: Duration::from_secs(1),
            barrier_timeout: Duration::from_secs(1),
            reply_timeout: Duration::from_secs(1),
            polling_share: 0.25,
            source_ips: vec![],
            credentials: Credentials::Dev,
            seed: SeedMode::None,
        }
    }
}

/// A user's part in ending the run: close its connection and hand in its stats, once however
/// often it is called (by [`Ctx::end_all`] or by the user's own on-stop transaction).
pub trait UserEnd: Send + Sync {
    /// Ends this user.
    fn end<'a>(&'a self, ctx: &'a Ctx) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

impl std::fmt::Debug for dyn UserEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserEnd")
    }
}

/// How often a drain looks whether the run is quiet.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// How often [`Ctx::end_all`] looks whether every user finished.
const END_POLL: Duration = Duration::from_millis(10);

/// Shared by every user of the run.
#[derive(Debug)]
pub struct Ctx {
    /// The scenario.
    pub settings: Settings,
    /// Counters for progress and the summary.
    pub live: Arc<Live>,
    /// Merged histograms.
    pub run: Mutex<RunStats>,
    /// Conversation id per slot (filled by seeding, or by convention).
    pub conversations: RwLock<Vec<i64>>,
    /// Joined members per slot.
    pub members: Vec<Arc<AtomicU64>>,
    /// Users done with connect + join (whether they succeeded).
    pub ready: AtomicU64,
    /// Users that stopped sending.
    pub finished: AtomicU64,
    /// When the first user became ready.
    first_ready: OnceLock<Instant>,
    /// When sending starts (set once, by the last ready user or the barrier timeout).
    send_start: OnceLock<Instant>,
    /// Set once the users' drain is over (the first user to reach it waits it out for all).
    drained: tokio::sync::OnceCell<()>,
    /// Every connected user's end, for [`Ctx::end_all`].
    ends: Mutex<Vec<Arc<dyn UserEnd>>>,
    /// Wakes the users waiting at the barrier.
    started: tokio::sync::Notify,
    /// Set when the run is over (progress reporter stops).
    pub done: AtomicBool,
    /// One HTTP client per source address, for polling users.
    pub http: Vec<reqwest::Client>,
    /// First tempId of this run (Unix microseconds at start): the server keeps sends
    /// idempotent by (sender, conversation, tempId), so a later run against the same server
    /// and conversations must not reuse tempIds or its sends would be answered as repeats.
    pub first_temp_id: u64,
}

impl Ctx {
    /// Shared state for `settings`.
    pub fn new(settings: Settings) -> anyhow::Result<Arc<Self>> {
        let slots = settings.conversations();
        let conversations = (0..slots)
            .map(|slot| settings.conventional_id(slot * settings.room_size.max(1)))
            .collect();
        let mut http = Vec::new();
        if settings.source_ips.is_empty() {
            http.push(crate::net::http_client(None, settings.target.timeout)?);
        } else {
            for ip in &settings.source_ips {
                http.push(crate::net::http_client(Some(*ip), settings.target.timeout)?);
            }
        }
        Ok(Arc::new(Self {
            members: (0..slots).map(|_| Arc::new(AtomicU64::new(0))).collect(),
            settings,
            live: Arc::new(Live::default()),
            run: Mutex::new(RunStats::default()),
            conversations: RwLock::new(conversations),
            ready: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            first_ready: OnceLock::new(),
            send_start: OnceLock::new(),
            drained: tokio::sync::OnceCell::new(),
            ends: Mutex::new(Vec::new()),
            started: tokio::sync::Notify::new(),
            done: AtomicBool::new(false),
            http,
            first_temp_id: crate::wire::unix_micros(),
        }))
    }

    /// Conversation id of the user at `index`.
    pub fn conversation_of(&self, index: u64) -> i64 {
        let slot = usize::try_from(self.settings.slot(index)).unwrap_or(usize::MAX);
        self.conversations
            .read()
            .ok()
            .and_then(|c| c.get(slot).copied())
            .unwrap_or_else(|| self.settings.conventional_id(index))
    }

    /// Joined-member counter of the user at `index`'s conversation.
    pub fn members_of(&self, index: u64) -> Arc<AtomicU64> {
        let slot = usize::try_from(self.settings.slot(index)).unwrap_or(usize::MAX);
        self.members.get(slot).cloned().unwrap_or_default()
    }

    /// HTTP client for the user at `index`.
    pub fn http_for(&self, index: u64) -> Option<&reqwest::Client> {
        let n = self.http.len().max(1) as u64;
        self.http.get(usize::try_from(index % n).unwrap_or(0))
    }

    /// Marks one user ready (connected and joined, or failed).
    pub fn mark_ready(&self) {
        let now = Instant::now();
        let _ = self.first_ready.get_or_init(|| now);
        if self.ready.fetch_add(1, Ordering::AcqRel) + 1 >= self.settings.users {
            let _ = self.send_start.get_or_init(|| now);
            self.started.notify_waiters();
        }
    }

    /// Waits until sending may start; returns when it starts.
    pub async fn wait_send_start(&self) -> Instant {
        loop {
            if let Some(at) = self.send_start.get() {
                return *at;
            }
            let waited = self
                .first_ready
                .get()
                .map(Instant::elapsed)
                .unwrap_or_default();
            if waited >= self.settings.barrier_timeout {
                return *self.send_start.get_or_init(Instant::now);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether nothing is in flight: every user stopped sending, every send was answered and
    /// every delivery its answer promised arrived. Never, when rooms reach into another process
    /// (its senders' deliveries to this one's users are not counted here).
    pub fn quiet(&self) -> bool {
        let live = &self.live;
        self.settings.rooms_are_own()
            && self.finished.load(Ordering::Acquire) >= self.ready.load(Ordering::Acquire)
            && Live::get(&live.sent_acks) >= Live::get(&live.sends)
            && Live::get(&live.deliveries) >= Live::get(&live.expected_deliveries)
    }

    /// Waits until the run is quiet, at most `limit`. A run whose last deliveries arrived ends
    /// its drain then, not `limit` later: a bench of 1.5 s runs spent 0.5 s of every run
    /// waiting out a drain of nothing.
    pub async fn drain_for(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while !self.quiet() && Instant::now() < until {
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }

    /// The users' drain, waited out once for all of them (`settings.drain` at most).
    pub async fn drained(&self) {
        self.drained
            .get_or_init(|| self.drain_for(self.settings.drain))
            .await;
    }

    /// Registers a connected user's end for [`Ctx::end_all`].
    pub fn on_end(&self, end: Arc<dyn UserEnd>) {
        if let Ok(mut ends) = self.ends.lock() {
            ends.push(end);
        }
    }

    /// Ends the run without goose: once every user stopped sending, waits out the drain, then
    /// ends every user (closes its connection, merges its stats). Goose would do the same
    /// through each user's on-stop transaction, but it looks whether its users are done only
    /// every half second, which cost a bench of 1.5 s runs a quarter second per run. Never
    /// returns while a user has not finished (a user goose has yet to start, say): goose ends
    /// that run.
    pub async fn end_all(&self) {
        while self.finished.load(Ordering::Acquire) < self.settings.users {
            tokio::time::sleep(END_POLL).await;
        }
        self.drained().await;
        let ends = self
            .ends
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default();
        futures_util::future::join_all(ends.iter().map(|e| e.end(self))).await;
    }

    /// When sending started, if it has.
    pub fn send_start(&self) -> Option<Instant> {
        self.send_start.get().copied()
    }

    /// When the send phase ends (None before it starts).
    pub fn send_end(&self) -> Option<Instant> {
        self.send_start().map(|s| s + self.settings.duration)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(users: u64, room: u64, first: u64) -> Settings {
        Settings::for_tests(users, room, first)
    }

    #[test]
    fn conventional_rooms_line_up_across_processes() {
        let a = settings(20, 10, 1);
        let b = settings(20, 10, 21);
        assert_eq!(a.conventional_id(0), 1);
        assert_eq!(a.conventional_id(9), 1);
        assert_eq!(a.conventional_id(10), 2);
        assert_eq!(b.conventional_id(0), 3);
        assert_eq!(a.conversations(), 2);
    }

    fn node(port: u16) -> Target {
        Target {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            host: format!("127.0.0.1:{port}"),
            namespace: "/chat".into(),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn one_node_takes_every_user() {
        let s = settings(20, 10, 1);
        assert!((0..20).all(|i| s.target_of(i).host == "127.0.0.1:1"));
    }

    #[test]
    fn users_go_round_robin_over_the_nodes_so_each_room_spans_them() {
        let mut s = settings(30, 10, 1);
        s.target = node(3400);
        s.more_targets = vec![node(3401), node(3402)];
        let ports: Vec<u16> = (0..30).map(|i| s.target_of(i).addr.port()).collect();
        assert_eq!(&ports[..4], &[3400, 3401, 3402, 3400]);
        for room in 0..3 {
            let members = &ports[room * 10..room * 10 + 10];
            for port in [3400, 3401, 3402] {
                let on = members.iter().filter(|p| **p == port).count();
                assert!((3..=4).contains(&on), "room {room}: {on} members on {port}");
            }
        }
        // Rooms of 2: the two members of every 1:1 room are on different nodes.
        s.room_size = 2;
        for slot in 0..15u64 {
            assert_ne!(s.target_of(2 * slot).host, s.target_of(2 * slot + 1).host);
        }
    }

    #[test]
    fn polling_share_is_spread_evenly() {
        let s = settings(100, 10, 1);
        let polling = (0..100).filter(|i| s.uses_polling(*i)).count();
        assert_eq!(polling, 25);
    }

    #[test]
    fn rooms_are_own_when_seeded_or_aligned_to_whole_rooms() {
        assert!(settings(20, 10, 1).rooms_are_own());
        assert!(settings(20, 10, 21).rooms_are_own());
        // A process whose last room the next process's users complete, or whose first room
        // began in the previous process.
        assert!(!settings(15, 10, 1).rooms_are_own());
        assert!(!settings(20, 10, 6).rooms_are_own());
        let mut seeded = settings(15, 10, 6);
        seeded.seed = SeedMode::Rest;
        assert!(seeded.rooms_are_own());
    }

    #[tokio::test]
    async fn the_drain_ends_when_the_last_delivery_arrives_not_at_its_limit() {
        let ctx = Ctx::new(settings(2, 2, 1)).unwrap();
        let long = Duration::from_secs(60);
        ctx.mark_ready();
        ctx.mark_ready();
        // One message sent and answered, its delivery to the other member still on its way.
        Live::add(&ctx.live.sends, 1);
        Live::add(&ctx.live.sent_acks, 1);
        Live::add(&ctx.live.expected_deliveries, 1);
        ctx.finished.store(2, Ordering::Release);
        assert!(!ctx.quiet());
        let waiting = tokio::time::timeout(Duration::from_millis(100), ctx.drain_for(long));
        assert!(
            waiting.await.is_err(),
            "the drain ended with a delivery in flight"
        );
        Live::add(&ctx.live.deliveries, 1);
        assert!(ctx.quiet());
        let done = tokio::time::timeout(Duration::from_secs(10), ctx.drained());
        assert!(
            done.await.is_ok(),
            "the drain went on after everything arrived"
        );

        // An unanswered send keeps it going too; so does a user still sending.
        Live::add(&ctx.live.sends, 1);
        assert!(!ctx.quiet());
        Live::add(&ctx.live.sent_acks, 1);
        ctx.finished.store(1, Ordering::Release);
        assert!(!ctx.quiet());
        ctx.finished.store(2, Ordering::Release);
        assert!(ctx.quiet());
    }

    #[tokio::test]
    async fn the_drain_waits_its_limit_when_rooms_reach_into_another_process() {
        let ctx = Ctx::new(settings(3, 2, 1)).unwrap();
        for _ in 0..3 {
            ctx.mark_ready();
        }
        ctx.finished.store(3, Ordering::Release);
        assert!(!ctx.quiet());
        let began = Instant::now();
        ctx.drain_for(Duration::from_millis(50)).await;
        assert!(began.elapsed() >= Duration::from_millis(50));
    }
}
