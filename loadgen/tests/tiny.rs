//! The smallest real load run: chatwire in-process (memory store), 50 simulated users in rooms
//! of 10 created over REST, about 5 s of sending with typing and read receipts. Every
//! acknowledged message must reach each other member of its room exactly once, with no errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chatwire::config::Config;
use chatwire::server::{Mode, Server};
use chatwire_loadgen::cli::{Cli, Command};
use clap::Parser as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_users_get_every_message_once() {
    let mut config = Config::for_tests();
    config.rate_limit_conn_per_ip = 0;
    let server = Server::start(&config, Mode::Chat)
        .await
        .expect("server starts");
    let out = std::env::temp_dir().join(format!("chatwire-loadgen-tiny-{}", std::process::id()));
    let host = format!("http://{}", server.addr);
    let out_dir = out.display().to_string();
    let cli = Cli::try_parse_from([
        "chatwire-loadgen",
        "run",
        "-H",
        &host,
        "-u",
        "50",
        "--room-size",
        "10",
        "--duration",
        "5",
        "--rate",
        "1",
        "--seed",
        "rest",
        "--polling-share",
        "0.2",
        "--out-dir",
        &out_dir,
        "--name",
        "tiny",
        "--progress-secs",
        "1",
        "--max-error-rate",
        "0",
    ])
    .expect("arguments parse");
    let Command::Run(args) = cli.command else {
        panic!("run")
    };
    let outcome = chatwire_loadgen::run(&args).await.expect("run completes");
    server.shutdown().await;

    let r = &outcome.result;
    assert_eq!(r.connected, 50, "every user connects");
    assert_eq!(r.joined, 50, "every user joins its conversation");
    assert!(r.sends >= 200, "about 5 messages per user, got {}", r.sends);
    assert_eq!(r.sent_acks, r.sends, "every send is acknowledged");
    assert_eq!(
        r.expected_deliveries,
        r.sent_acks * 9,
        "rooms of 10 deliver to 9 others"
    );
    assert_eq!(
        r.deliveries, r.expected_deliveries,
        "every message reaches every other member once"
    );
    assert!(r.errors.is_empty(), "no errors: {:?}", r.errors);
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(r.percentiles("delivery").count, r.deliveries);
    for file in [
        "tiny.results.json",
        "tiny.svg",
        "tiny.md",
        "tiny.json",
        "tiny.html",
    ] {
        assert!(out.join(file).exists(), "{file} written");
    }
    let _ = std::fs::remove_dir_all(out);
}

/// A second run against the same server reuses the same 1:1 conversations (the first run kept
/// their ids in a file; REST would return the existing ones): its sends must be new messages,
/// never answered as repeats of the first run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_conversations_is_delivered_too() {
    let mut config = Config::for_tests();
    config.rate_limit_conn_per_ip = 0;
    let server = Server::start(&config, Mode::Chat)
        .await
        .expect("server starts");
    let out = std::env::temp_dir().join(format!("chatwire-loadgen-again-{}", std::process::id()));
    let host = format!("http://{}", server.addr);
    let out_dir = out.display().to_string();
    let kept = out.join("conversations.json").display().to_string();
    for round in ["first", "second"] {
        let cli = Cli::try_parse_from([
            "chatwire-loadgen",
            "run",
            "-H",
            &host,
            "-u",
            "10",
            "--room-size",
            "2",
            "--duration",
            "2",
            "--rate",
            "2",
            "--no-typing",
            "--no-read",
            "--drain",
            "1",
            "--out-dir",
            &out_dir,
            "--name",
            round,
            "--no-goose-reports",
            "--conversations-file",
            &kept,
        ])
        .expect("arguments parse");
        let Command::Run(args) = cli.command else {
            panic!("run")
        };
        let r = chatwire_loadgen::run(&args)
            .await
            .expect("run completes")
            .result;
        assert!(r.sent_acks >= 20, "{round}: {} acked", r.sent_acks);
        assert_eq!(
            r.expected_deliveries, r.sent_acks,
            "{round}: 1:1 delivers to one other"
        );
        assert_eq!(
            r.deliveries, r.expected_deliveries,
            "{round} run: every message delivered"
        );
        // Without goose reports the run ends without goose's on-stop transactions: every
        // user's latencies must still be merged.
        assert_eq!(r.percentiles("delivery").count, r.deliveries, "{round}");
        let file = std::fs::read_to_string(&kept).expect("the ids are kept");
        assert!(file.contains("\"ids\""), "{file}");
    }
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(out);
}
