//! Tests of the command line and the defaults.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn parse(args: &[&str]) -> Command {
    Cli::try_parse_from(std::iter::once("chatwire").chain(args.iter().copied()))
        .unwrap()
        .into_command()
}

#[test]
fn no_subcommand_is_serve_with_laptop_defaults() {
    let Command::Serve(c) = parse(&[]) else {
        panic!("expected serve")
    };
    // Values the environment may override are only checked when it does not set them.
    if std::env::var_os("PORT").is_none() {
        assert_eq!(c.port, 3000);
    }
    if std::env::var_os("DATABASE_URL").is_none() {
        assert_eq!(c.database_url, "sqlite://./data/chatwire.db");
    }
    if std::env::var_os("RATE_LIMIT_PER_SOCKET").is_none() {
        assert_eq!((c.rate_limit_per_socket, c.rate_limit_burst), (20, 40));
    }
    if std::env::var_os("MAX_MESSAGE_CHARS").is_none() {
        assert_eq!(c.max_message_chars, 4000);
    }
    assert!(c.shard_count() >= 1);
}

#[test]
fn flags_work_with_and_without_the_serve_word() {
    let Command::Serve(a) = parse(&["--port", "8080", "--shards", "3"]) else {
        panic!("expected serve")
    };
    let Command::Serve(b) = parse(&["serve", "--port", "8080", "--shards", "3"]) else {
        panic!("expected serve")
    };
    assert_eq!((a.port, a.shards), (8080, 3));
    assert_eq!((b.port, b.shards), (8080, 3));
    assert_eq!(a.shard_count(), 3);
}

#[test]
fn conformance_has_its_own_port_and_short_timers() {
    let Command::Conformance(args) = parse(&["conformance", "--port", "3001"]) else {
        panic!("expected conformance")
    };
    let c = args.to_config();
    assert_eq!(c.port, 3001);
    assert_eq!(c.ping_interval(), Duration::from_millis(300));
    assert_eq!(c.ping_timeout(), Duration::from_millis(200));
    assert_eq!(c.database_url, "memory");
    assert!(c.dev_tokens_enabled());
}

#[test]
fn cors_origins_split_on_commas() {
    let Command::Serve(c) = parse(&["--cors-origins", "https://a.example,https://b.example"])
    else {
        panic!("expected serve")
    };
    assert_eq!(c.cors_origins, ["https://a.example", "https://b.example"]);
}

#[test]
fn dev_tokens_default_follows_the_jwt_key() {
    let mut c = Config::for_tests();
    c.dev_tokens = None;
    c.jwt_secret = None;
    c.jwt_public_key = None;
    assert!(c.dev_tokens_enabled());
    c.jwt_secret = Some("s3cret".into());
    assert!(!c.dev_tokens_enabled());
    c.dev_tokens = Some(true);
    assert!(c.dev_tokens_enabled());
}

#[test]
fn dev_tokens_accept_boolish_values() {
    for (text, want) in [("true", true), ("0", false), ("off", false), ("yes", true)] {
        let Command::Serve(c) = parse(&["--dev-tokens", text]) else {
            panic!("expected serve")
        };
        assert_eq!(c.dev_tokens, Some(want), "{text}");
    }
    assert!(Cli::try_parse_from(["chatwire", "--dev-tokens", "maybe"]).is_err());
}

#[test]
fn algorithm_names_are_upper_case() {
    let Command::Serve(c) = parse(&["--jwt-algorithm", "ES256"]) else {
        panic!("expected serve")
    };
    assert_eq!(c.jwt_algorithm, Some(JwtAlgorithm::ES256));
    assert!(
        Cli::try_parse_from(["chatwire", "--jwt-algorithm", "none"]).is_err(),
        "an unknown algorithm must be refused"
    );
}

#[test]
fn for_tests_is_isolated() {
    let c = Config::for_tests();
    assert_eq!(c.port, 0);
    assert_eq!(c.database_url, "memory");
    assert_eq!(c.shard_count(), 2);
    assert!(c.dev_tokens_enabled());
    assert_eq!(c.listen_addr().ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    // Not taken from the environment (run with CORS_ORIGINS / JWT_SECRET set to see it).
    assert!(c.cors_origins.is_empty());
    assert!(c.jwt_secret.is_none() && c.jwt_public_key.is_none());
}

#[test]
fn demo_page_follows_dev_tokens_unless_set() {
    let mut c = Config::for_tests();
    c.jwt_secret = None;
    c.dev_tokens = None;
    assert!(c.demo_page_enabled());
    c.jwt_secret = Some("s3cret".into());
    assert!(!c.demo_page_enabled());
    c.demo_page = Some(true);
    assert!(c.demo_page_enabled());
    c.jwt_secret = None;
    c.demo_page = Some(false);
    assert!(!c.demo_page_enabled());
}
