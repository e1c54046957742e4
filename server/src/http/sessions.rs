//! Engine.IO session caps: at most `MAX_SESSIONS_PER_IP` sessions open at once from one client
//! address (IPv6 per /64) and `MAX_SESSIONS` in the process, and at most
//! `MAX_HANDSHAKES_PER_CONNECTION` new sessions opened over one keep-alive HTTP connection (each
//! after the first also counts against the per-address connection rate, which otherwise sees
//! only new TCP connections). A
//! session holds a [`SessionPermit`] (kept in its `Handshake`) that gives its place back when
//! the connection is dropped. Refusals answer 429 (per address, per connection) or 503 (process
//! full) and are counted in `chatwire_connections_refused_total{reason}`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper::StatusCode;

use crate::ratelimit::client_key;

/// Why a new session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRefusal {
    /// `MAX_SESSIONS_PER_IP` sessions are open from this address.
    PerIp,
    /// `MAX_SESSIONS` sessions are open in the process.
    Total,
    /// `MAX_HANDSHAKES_PER_CONNECTION` sessions were opened over this HTTP connection.
    PerConnection,
    /// A further handshake on a keep-alive connection, over `RATE_LIMIT_CONN_PER_IP`.
    RateLimited,
}

impl SessionRefusal {
    /// The HTTP status of the refusal.
    pub fn status(self) -> StatusCode {
        match self {
            Self::PerIp | Self::PerConnection | Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Total => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `reason` label and the message of the JSON body.
    pub fn reason(self) -> (&'static str, &'static str) {
        match self {
            Self::PerIp => ("sessions_per_ip", "too many sessions from this address"),
            Self::Total => ("sessions_total", "server full, retry later"),
            Self::PerConnection => (
                "handshakes_per_connection",
                "too many sessions opened over this connection",
            ),
            Self::RateLimited => ("rate_limited", "too many new sessions from this address"),
        }
    }

    /// Counts the refusal in the metrics.
    pub fn count(self) {
        metrics::counter!(crate::telemetry::REFUSED, crate::telemetry::LABEL_REASON => self.reason().0)
            .increment(1);
    }
}

/// The open-session counts, shared by every shard.
#[derive(Debug)]
pub struct SessionCaps {
    /// Most sessions per address (0 = no limit).
    per_ip_max: usize,
    /// Most sessions in the process (0 = no limit).
    total_max: usize,
    /// Sessions open in the process.
    total: AtomicUsize,
    /// Sessions open per address; addresses with none are removed.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl SessionCaps {
    /// Caps of `per_ip_max` sessions per address and `total_max` in all (0 = no limit).
    pub fn new(per_ip_max: usize, total_max: usize) -> Arc<Self> {
        Arc::new(Self {
            per_ip_max,
            total_max,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a new session from `ip`, or why there is none (counted in the metrics).
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<SessionPermit, SessionRefusal> {
        let key = client_key(ip);
        let refused = |r: SessionRefusal| {
            r.count();
            Err(r)
        };
        let taken = self.total.fetch_add(1, Ordering::AcqRel);
        if self.total_max > 0 && taken >= self.total_max {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return refused(SessionRefusal::Total);
        }
        if self.per_ip_max > 0 {
            let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(key).or_insert(0);
            if *n >= self.per_ip_max {
                if *n == 0 {
                    map.remove(&key);
                }
                drop(map);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return refused(SessionRefusal::PerIp);
            }
            *n += 1;
        }
        Ok(SessionPermit {
            caps: self.clone(),
            key,
        })
    }

    /// Sessions open in the process.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Addresses with at least one open session.
    pub fn addresses(&self) -> usize {
        self.per_ip.lock().map_or(0, |m| m.len())
    }
}

/// One session's place; dropping it frees the place.
#[derive(Debug)]
pub struct SessionPermit {
    /// The caps it counts in.
    caps: Arc<SessionCaps>,
    /// Its client address key.
    key: IpAddr,
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.caps.total.fetch_sub(1, Ordering::AcqRel);
        if self.caps.per_ip_max > 0 {
            let mut map = self.caps.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&self.key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total_and_places_come_back() {
        let caps = SessionCaps::new(2, 3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = caps.acquire(a).unwrap();
        let _a2 = caps.acquire(a).unwrap();
        assert_eq!(caps.acquire(a).unwrap_err(), SessionRefusal::PerIp);
        let _b1 = caps.acquire(b).unwrap();
        assert_eq!(caps.acquire(b).unwrap_err(), SessionRefusal::Total);
        assert_eq!(caps.open(), 3);
        drop(a1);
        assert_eq!(caps.open(), 2);
        let _a3 = caps.acquire(a).unwrap();
        drop((_a2, _a3, _b1));
        assert_eq!(
            (caps.open(), caps.addresses()),
            (0, 0),
            "nothing left behind"
        );
        let unlimited = SessionCaps::new(0, 0);
        let many: Vec<_> = (0..100).map(|_| unlimited.acquire(a).unwrap()).collect();
        assert_eq!(unlimited.open(), many.len());
    }
}
