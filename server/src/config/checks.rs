//! Start-up checks of a [`Config`]: settings that parse but must not run. [`Config::check`] is
//! called by `Server::start`, so the binary and in-process servers refuse the same mistakes with
//! the same message:
//! - dev tokens switched on by default (no JWT key) while listening on a non-loopback address:
//!   anyone who reaches the port could connect as `Bearer 1:brand`;
//! - `JWT_SECRET`, `JWT_PUBLIC_KEY`, `JWT_AUDIENCE` or `JWT_ISSUER` set but empty (a template
//!   left unfilled);
//! - durations so long that adding them to the clock overflows.

use std::net::IpAddr;

use super::Config;

/// Longest accepted duration setting: one day. Longer timers are always a typo, and adding
/// `u64::MAX` milliseconds to the clock would overflow.
pub const MAX_DURATION_MS: u64 = 86_400_000;

/// A configuration the server refuses to start with; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `JWT_SECRET` is set to the empty string.
    #[error(
        "JWT_SECRET is set but empty: set a random secret of at least 32 bytes, or unset it \
         (and JWT_PUBLIC_KEY) to run with dev tokens on a loopback address"
    )]
    EmptySecret,
    /// `JWT_PUBLIC_KEY` is set to the empty string.
    #[error("JWT_PUBLIC_KEY is set but empty: set a PEM public key or a path to one, or unset it")]
    EmptyPublicKey,
    /// `JWT_AUDIENCE` or `JWT_ISSUER` is set to the empty string (the check would be off).
    #[error("{0} is set but empty: set the expected value, or unset it to skip the check")]
    EmptyClaim(&'static str),
    /// Dev tokens are on because no JWT key is configured, and the address is reachable from
    /// other machines.
    #[error(
        "dev tokens are on (no JWT_SECRET or JWT_PUBLIC_KEY is configured) and HOST={0} is not a \
         loopback address: anyone who reaches this port could connect as any user. Configure \
         JWT_SECRET or JWT_PUBLIC_KEY, or listen on 127.0.0.1 (HOST=127.0.0.1 / --host \
         127.0.0.1), or set DEV_TOKENS=true (--dev-tokens true) to accept dev tokens on this \
         address explicitly"
    )]
    DevTokensExposed(IpAddr),
    /// A duration setting over [`MAX_DURATION_MS`].
    #[error("{name}={value} is too long: at most {max} ({unit})")]
    TooLong {
        /// The environment variable of the setting.
        name: &'static str,
        /// The configured value.
        value: u64,
        /// The largest accepted value.
        max: u64,
        /// `milliseconds` or `seconds`.
        unit: &'static str,
    },
}

impl Config {
    /// Refuses configurations that must not run (see the module documentation).
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.as_deref() == Some("") {
            return Err(ConfigError::EmptySecret);
        }
        if self.jwt_public_key.as_deref() == Some("") {
            return Err(ConfigError::EmptyPublicKey);
        }
        if self.jwt_audience.as_deref() == Some("") {
            return Err(ConfigError::EmptyClaim("JWT_AUDIENCE"));
        }
        if self.jwt_issuer.as_deref() == Some("") {
            return Err(ConfigError::EmptyClaim("JWT_ISSUER"));
        }
        if self.dev_tokens.is_none() && self.dev_tokens_enabled() && !self.host.is_loopback() {
            return Err(ConfigError::DevTokensExposed(self.host));
        }
        for (name, value) in self.durations_ms() {
            if value > MAX_DURATION_MS {
                return Err(ConfigError::TooLong {
                    name,
                    value,
                    max: MAX_DURATION_MS,
                    unit: "milliseconds",
                });
            }
        }
        let max_secs = MAX_DURATION_MS / 1000;
        if self.jwt_leeway_secs > max_secs {
            return Err(ConfigError::TooLong {
                name: "JWT_LEEWAY_SECS",
                value: self.jwt_leeway_secs,
                max: max_secs,
                unit: "seconds",
            });
        }
        Ok(())
    }

    /// Every millisecond duration setting with its environment variable name.
    fn durations_ms(&self) -> [(&'static str, u64); 8] {
        [
            ("PING_INTERVAL_MS", self.ping_interval_ms),
            ("PING_TIMEOUT_MS", self.ping_timeout_ms),
            ("UPGRADE_TIMEOUT_MS", self.upgrade_timeout_ms),
            ("CONNECT_TIMEOUT_MS", self.connect_timeout_ms),
            ("HEADER_READ_TIMEOUT_MS", self.header_read_timeout_ms),
            ("BODY_READ_TIMEOUT_MS", self.body_read_timeout_ms),
            ("WRITE_BATCH_WINDOW_MS", self.write_batch_window_ms),
            ("WRITE_DEADLINE_MS", self.write_deadline_ms),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// The defaults of `chatwire serve` with no JWT key and no `DEV_TOKENS`.
    fn defaults() -> Config {
        let mut c = Config::for_tests();
        c.dev_tokens = None;
        c
    }

    #[test]
    fn implicit_dev_tokens_on_a_public_address_are_refused_with_the_way_out() {
        let mut c = defaults();
        c.host = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let e = c.check().unwrap_err();
        assert_eq!(e, ConfigError::DevTokensExposed(c.host));
        let text = e.to_string();
        for hint in ["DEV_TOKENS=true", "JWT_SECRET", "HOST=127.0.0.1"] {
            assert!(text.contains(hint), "{text} should mention {hint}");
        }
        // Explicit dev tokens, a JWT key, or a loopback address: accepted.
        c.dev_tokens = Some(true);
        assert_eq!(c.check(), Ok(()));
        c.dev_tokens = None;
        c.jwt_secret = Some("0123456789abcdef0123456789abcdef".into());
        assert_eq!(c.check(), Ok(()));
        c.jwt_secret = None;
        c.host = "::1".parse().unwrap();
        assert_eq!(c.check(), Ok(()));
        c.host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn empty_jwt_settings_are_errors_even_on_loopback() {
        let mut c = defaults();
        c.jwt_secret = Some(String::new());
        assert_eq!(c.check(), Err(ConfigError::EmptySecret));
        c.jwt_secret = None;
        c.jwt_public_key = Some(String::new());
        assert_eq!(c.check(), Err(ConfigError::EmptyPublicKey));
        c.jwt_public_key = None;
        c.jwt_audience = Some(String::new());
        assert_eq!(c.check(), Err(ConfigError::EmptyClaim("JWT_AUDIENCE")));
        c.jwt_audience = None;
        c.jwt_issuer = Some(String::new());
        assert_eq!(c.check(), Err(ConfigError::EmptyClaim("JWT_ISSUER")));
    }

    #[test]
    fn absurd_durations_are_refused_by_name() {
        let mut c = defaults();
        c.connect_timeout_ms = u64::MAX;
        let e = c.check().unwrap_err();
        assert!(e.to_string().starts_with("CONNECT_TIMEOUT_MS="), "{e}");
        c.connect_timeout_ms = MAX_DURATION_MS;
        assert_eq!(c.check(), Ok(()));
        c.jwt_leeway_secs = u64::MAX;
        assert!(
            c.check()
                .unwrap_err()
                .to_string()
                .contains("JWT_LEEWAY_SECS")
        );
    }
}
