//! REST rate limits: each request is of one [`RestKind`] (send, conversation creation, history
//! search, other), limited per user and per client address. Over a limit the request is answered
//! `429 rate_limited` with `Retry-After`, before any store work (the address limit even before
//! authentication), and counted in `chatwire_rest_rate_limited_total{kind,scope}`.

use std::net::IpAddr;
use std::time::Duration;

use hyper::Method;

use crate::ratelimit::{KeyedRate, client_key};
use crate::store::UserKey;

/// What a REST request costs, for rate limiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestKind {
    /// `POST /api/chat/messages`.
    Send,
    /// `POST /api/chat/conversations` (direct or group).
    Create,
    /// `GET /api/chat/conversations/:id/messages?q=...` (a scan of the conversation).
    Search,
    /// Everything else: lists, history pages, unread counts, read receipts, hiding.
    Read,
}

impl RestKind {
    /// Every kind, in the order of [`RestKind::index`].
    pub const ALL: [RestKind; 4] = [Self::Send, Self::Create, Self::Search, Self::Read];

    /// The kind of a request.
    pub fn of(method: &Method, path: &str, query: Option<&str>) -> RestKind {
        let path = path.trim_end_matches('/');
        if *method == Method::POST && path == "/api/chat/messages" {
            return Self::Send;
        }
        if *method == Method::POST && path == "/api/chat/conversations" {
            return Self::Create;
        }
        if *method == Method::GET
            && path.ends_with("/messages")
            && super::query::Query::parse(query.unwrap_or(""))
                .get("q")
                .is_some_and(|q| !q.is_empty())
        {
            return Self::Search;
        }
        Self::Read
    }

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Create => "create",
            Self::Search => "search",
            Self::Read => "read",
        }
    }

    /// Position in [`RestKind::ALL`].
    fn index(self) -> usize {
        match self {
            Self::Send => 0,
            Self::Create => 1,
            Self::Search => 2,
            Self::Read => 3,
        }
    }
}

/// Sustained requests per second per user for each kind (0 = no limit; bursts are twice the
/// rate), and the factor that gives the per-address limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestRates {
    /// `RATE_LIMIT_REST_SENDS`.
    pub sends: u32,
    /// `RATE_LIMIT_REST_CREATES`.
    pub creates: u32,
    /// `RATE_LIMIT_REST_SEARCHES`.
    pub searches: u32,
    /// `RATE_LIMIT_REST_READS`.
    pub reads: u32,
    /// `RATE_LIMIT_REST_IP_FACTOR`: per-address limit = factor x per-user limit (0 = none).
    pub ip_factor: u32,
}

impl RestRates {
    /// The per-user rate of `kind`.
    fn of(&self, kind: RestKind) -> u32 {
        match kind {
            RestKind::Send => self.sends,
            RestKind::Create => self.creates,
            RestKind::Search => self.searches,
            RestKind::Read => self.reads,
        }
    }
}

/// Which limit refused a request, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// `user` or `ip`.
    pub scope: &'static str,
    /// Time until the next request of this kind would pass.
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds (rounded up, at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        let secs = if self.retry_after.subsec_nanos() > 0 {
            secs + 1
        } else {
            secs
        };
        secs.max(1)
    }
}

/// The REST limiters of the process (shared by every shard).
#[derive(Debug)]
pub struct RestRateLimits {
    /// Per user, by kind.
    per_user: [KeyedRate<UserKey>; 4],
    /// Per client address (IPv6 per /64), by kind.
    per_ip: [KeyedRate<IpAddr>; 4],
}

impl RestRateLimits {
    /// Limiters for `rates`.
    pub fn new(rates: RestRates) -> Self {
        let user = |k: RestKind| {
            let r = rates.of(k);
            KeyedRate::new(r, r.saturating_mul(2))
        };
        let ip = |k: RestKind| {
            let r = rates.of(k).saturating_mul(rates.ip_factor);
            KeyedRate::new(r, r.saturating_mul(2))
        };
        Self {
            per_user: RestKind::ALL.map(user),
            per_ip: RestKind::ALL.map(ip),
        }
    }

    /// Counts a request of `kind` from `ip` (before authentication).
    pub fn check_ip(&self, kind: RestKind, ip: IpAddr) -> Result<(), Limited> {
        self.per_ip[kind.index()]
            .check(&client_key(ip))
            .map_err(|retry_after| Self::refused(kind, "ip", retry_after))
    }

    /// Counts a request of `kind` from `user` (after authentication).
    pub fn check_user(&self, kind: RestKind, user: UserKey) -> Result<(), Limited> {
        self.per_user[kind.index()]
            .check(&user)
            .map_err(|retry_after| Self::refused(kind, "user", retry_after))
    }

    /// Counts a refusal in the metrics.
    fn refused(kind: RestKind, scope: &'static str, retry_after: Duration) -> Limited {
        metrics::counter!(
            crate::telemetry::REST_RATE_LIMITED,
            crate::telemetry::LABEL_KIND => kind.label(),
            crate::telemetry::LABEL_SCOPE => scope
        )
        .increment(1);
        Limited { scope, retry_after }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::store::UserType;

    #[test]
    fn requests_are_classified_by_cost() {
        let kind = |m: Method, p: &str, q: Option<&str>| RestKind::of(&m, p, q);
        assert_eq!(
            kind(Method::POST, "/api/chat/messages", None),
            RestKind::Send
        );
        assert_eq!(
            kind(Method::POST, "/api/chat/conversations/", None),
            RestKind::Create
        );
        let history = "/api/chat/conversations/7/messages";
        assert_eq!(
            kind(Method::GET, history, Some("q=hi&limit=5")),
            RestKind::Search
        );
        assert_eq!(
            kind(Method::GET, history, Some("q=&limit=5")),
            RestKind::Read
        );
        assert_eq!(kind(Method::GET, history, None), RestKind::Read);
        assert_eq!(
            kind(Method::GET, "/api/chat/unread-count", None),
            RestKind::Read
        );
    }

    #[test]
    fn users_and_addresses_are_limited_separately() {
        let limits = RestRateLimits::new(RestRates {
            sends: 1,
            creates: 1,
            searches: 1,
            reads: 1,
            ip_factor: 2,
        });
        let (a, b) = (
            UserKey::new(UserType::Brand, 1),
            UserKey::new(UserType::Brand, 2),
        );
        // Burst of 2 per user, then refused with a wait of about a second.
        assert!(limits.check_user(RestKind::Create, a).is_ok());
        assert!(limits.check_user(RestKind::Create, a).is_ok());
        let refused = limits.check_user(RestKind::Create, a).unwrap_err();
        assert_eq!((refused.scope, refused.retry_after_secs()), ("user", 1));
        assert!(limits.check_user(RestKind::Create, b).is_ok(), "per user");
        assert!(limits.check_user(RestKind::Send, a).is_ok(), "per kind");
        // The address allows 2 x 2 = 4 at once.
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..4 {
            assert!(limits.check_ip(RestKind::Search, ip).is_ok());
        }
        assert_eq!(
            limits.check_ip(RestKind::Search, ip).unwrap_err().scope,
            "ip"
        );
    }
}
