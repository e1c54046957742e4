//! Rate limits (GCRA, via `governor`): messages per socket and new connections per IP address.
//!
//! - [`MessageLimiter`]: one per socket, checked on every client event; default 20/s, bursts of 40.
//!   It lives as long as the socket, so it is kept small: 32 bytes (a process-wide clock,
//!   [`ProcessClock`], instead of a clock value in every limiter; checked by a test).
//! - [`ConnectionLimiter`]: one per process (shared by the shards), keyed by client address
//!   (IPv6 by its /64, since one host owns a whole /64). Entries that have returned to the
//!   "fresh" state are swept every [`SWEEP_EVERY`] checks, so its memory follows the number of
//!   addresses active in the last few seconds, not every address ever seen.
//! - [`KeyedRate`]: the same keyed, swept GCRA for any key (REST requests per user and per
//!   address, see `crate::rest::limits`); an over-limit check says how long to wait.

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Connection-limiter checks between two sweeps of idle entries.
pub const SWEEP_EVERY: u64 = 4096;

/// A zero-sized monotonic clock: nanoseconds since the first use in this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessClock;

impl Clock for ProcessClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let elapsed = EPOCH.get_or_init(Instant::now).elapsed();
        // u64 nanoseconds cover 584 years of uptime.
        Nanos::from(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// The quota for `per_second` sustained with bursts of `burst`; `None` when `per_second` is 0
/// (no limit). A burst below the rate is raised to the rate.
pub fn quota(per_second: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// A quota no client can exceed (4 billion per second), used when a limit is off so that the
/// per-socket limiter needs no `Option` discriminant.
const UNLIMITED: Quota = Quota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::MAX);

/// Per-socket message limiter.
#[derive(Debug)]
pub struct MessageLimiter<C: Clock = ProcessClock> {
    /// The GCRA state (an [`UNLIMITED`] quota when limiting is off).
    inner: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
}

impl MessageLimiter<ProcessClock> {
    /// A limiter for `per_second` messages with bursts of `burst` (0 per second = unlimited).
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self::with_clock(per_second, burst, ProcessClock)
    }
}

impl<C: Clock> MessageLimiter<C> {
    /// Same as [`MessageLimiter::new`] with a given clock (tests use governor's fake clock).
    pub fn with_clock(per_second: u32, burst: u32, clock: C) -> Self {
        Self {
            inner: RateLimiter::direct_with_clock(
                quota(per_second, burst).unwrap_or(UNLIMITED),
                clock,
            ),
        }
    }

    /// Takes one message from the budget; `false` means over the limit (`rate_limited`).
    pub fn check(&self) -> bool {
        self.inner.check().is_ok()
    }
}

/// The key of a client address: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64 prefix.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// The keyed GCRA store used by [`ConnectionLimiter`].
type KeyedLimiter<C> =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Per-IP new-connection limiter, shared by every shard (`Arc<ConnectionLimiter>`).
#[derive(Debug)]
pub struct ConnectionLimiter<C: Clock = DefaultClock> {
    /// The keyed GCRA state; `None` when limiting is off.
    inner: Option<KeyedLimiter<C>>,
    /// Checks so far, to sweep idle entries every [`SWEEP_EVERY`].
    checks: AtomicU64,
}

impl ConnectionLimiter<DefaultClock> {
    /// A limiter for `per_second` new connections per address with bursts of `burst`
    /// (0 per second = unlimited).
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self::with_clock(per_second, burst, DefaultClock::default())
    }
}

impl<C: Clock> ConnectionLimiter<C>
where
    C::Instant: Reference,
{
    /// Same as [`ConnectionLimiter::new`] with a given clock.
    pub fn with_clock(per_second: u32, burst: u32, clock: C) -> Self {
        Self {
            inner: quota(per_second, burst).map(|q| RateLimiter::dashmap_with_clock(q, clock)),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one new connection from `ip`; `false` means refuse it (HTTP 429 / close).
    pub fn check(&self, ip: IpAddr) -> bool {
        let Some(limiter) = &self.inner else {
            return true;
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        limiter.check_key(&client_key(ip)).is_ok()
    }

    /// Drops entries indistinguishable from a fresh state and returns memory. Runs by itself
    /// every [`SWEEP_EVERY`] checks; may also be called from a timer.
    pub fn sweep(&self) {
        if let Some(limiter) = &self.inner {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.inner.as_ref().map_or(0, |l| l.len())
    }
}

/// The keyed GCRA store used by [`KeyedRate`].
type GenericKeyed<K, C> =
    RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A keyed limiter for any key, swept like [`ConnectionLimiter`]; over the limit, `check`
/// returns how long until the key may try again (for `Retry-After`).
#[derive(Debug)]
pub struct KeyedRate<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    /// The keyed GCRA state; `None` when limiting is off.
    inner: Option<GenericKeyed<K, C>>,
    /// Checks so far, to sweep idle entries every [`SWEEP_EVERY`].
    checks: AtomicU64,
    /// The limiter's clock, to turn a refusal into a wait.
    clock: C,
}

impl<K: Hash + Eq + Clone> KeyedRate<K, DefaultClock> {
    /// `per_second` per key with bursts of `burst` (0 per second = unlimited).
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self::with_clock(per_second, burst, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedRate<K, C>
where
    C::Instant: Reference,
{
    /// Same as [`KeyedRate::new`] with a given clock.
    pub fn with_clock(per_second: u32, burst: u32, clock: C) -> Self {
        Self {
            inner: quota(per_second, burst)
                .map(|q| RateLimiter::dashmap_with_clock(q, clock.clone())),
            checks: AtomicU64::new(0),
            clock,
        }
    }

    /// Counts one request for `key`; `Err(wait)` means refuse it, retrying after `wait`.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Keys currently tracked.
    pub fn tracked(&self) -> usize {
        self.inner.as_ref().map_or(0, |l| l.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn keyed_rate_says_how_long_to_wait() {
        let clock = FakeRelativeClock::default();
        let limiter = KeyedRate::with_clock(2, 4, clock.clone());
        for _ in 0..4 {
            assert_eq!(limiter.check(&"a"), Ok(()));
        }
        let wait = limiter.check(&"a").unwrap_err();
        assert_eq!(
            wait,
            Duration::from_millis(500),
            "2/s: the next one in 500 ms"
        );
        assert_eq!(limiter.check(&"b"), Ok(()), "keys are independent");
        clock.advance(wait);
        assert_eq!(limiter.check(&"a"), Ok(()));
        let off = KeyedRate::<&str, _>::with_clock(0, 0, clock);
        assert!((0..1000).all(|_| off.check(&"a").is_ok()));
    }

    #[test]
    fn socket_limiter_allows_the_burst_then_the_rate() {
        let clock = FakeRelativeClock::default();
        let limiter = MessageLimiter::with_clock(20, 40, clock.clone());
        for i in 0..40 {
            assert!(limiter.check(), "message {i} of the burst");
        }
        assert!(!limiter.check(), "41st message at once must be limited");
        // 20/s: one message every 50 ms.
        clock.advance(Duration::from_millis(49));
        assert!(!limiter.check());
        clock.advance(Duration::from_millis(1));
        assert!(limiter.check());
        assert!(!limiter.check());
        // A full second refills 20, not more.
        clock.advance(Duration::from_secs(1));
        let allowed = (0..100).filter(|_| limiter.check()).count();
        assert_eq!(allowed, 20);
        // Long idle refills the whole burst and no more.
        clock.advance(Duration::from_secs(60));
        let allowed = (0..100).filter(|_| limiter.check()).count();
        assert_eq!(allowed, 40);
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let limiter = MessageLimiter::with_clock(0, 0, FakeRelativeClock::default());
        assert!((0..10_000).all(|_| limiter.check()));
        let conns = ConnectionLimiter::with_clock(0, 0, FakeRelativeClock::default());
        assert!((0..10_000).all(|_| conns.check(IpAddr::from([10, 0, 0, 1]))));
        assert_eq!(conns.tracked(), 0);
    }

    #[test]
    fn socket_limiter_is_small() {
        let size = std::mem::size_of::<MessageLimiter>();
        assert!(size <= 32, "MessageLimiter is {size} bytes");
    }

    #[test]
    fn real_clock_limiter_limits() {
        let limiter = MessageLimiter::new(1, 2);
        assert!(limiter.check() && limiter.check());
        assert!(!limiter.check());
    }

    #[test]
    fn connection_limiter_is_per_address() {
        let clock = FakeRelativeClock::default();
        let limiter = ConnectionLimiter::with_clock(10, 20, clock.clone());
        let a = IpAddr::from([192, 0, 2, 1]);
        let b = IpAddr::from([192, 0, 2, 2]);
        assert_eq!((0..50).filter(|_| limiter.check(a)).count(), 20);
        // Another address has its own budget.
        assert_eq!((0..50).filter(|_| limiter.check(b)).count(), 20);
        clock.advance(Duration::from_millis(100));
        assert!(limiter.check(a));
        assert!(!limiter.check(a));
    }

    #[test]
    fn ipv6_addresses_share_their_64_prefix() {
        let limiter = ConnectionLimiter::with_clock(1, 2, FakeRelativeClock::default());
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.check(one) && limiter.check(two));
        assert!(!limiter.check(one), "same /64 shares the budget");
        assert!(limiter.check(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), IpAddr::from([192, 0, 2, 7]));
    }

    #[test]
    fn idle_entries_are_swept() {
        let clock = FakeRelativeClock::default();
        let limiter = ConnectionLimiter::with_clock(100, 200, clock.clone());
        for i in 0..1000u32 {
            assert!(limiter.check(IpAddr::from(i.to_be_bytes())));
        }
        assert_eq!(limiter.tracked(), 1000);
        clock.advance(Duration::from_secs(10));
        limiter.sweep();
        assert_eq!(limiter.tracked(), 0);
        // Sweeps also happen by themselves as checks go by.
        for i in 0..SWEEP_EVERY as u32 {
            limiter.check(IpAddr::from((i + 1_000_000).to_be_bytes()));
            clock.advance(Duration::from_millis(10));
        }
        assert!(limiter.tracked() < SWEEP_EVERY as usize);
    }
}
