//! LOCAL SCRATCH (not committed): runs the interop scripts with conversations made in the store directly.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]
#[path = "interop/harness.rs"]
mod harness;
use harness::*;
use chatwire::store::{AnyStore, Store, UserKey, UserType};

async fn server_with(pairs: &[((i64, UserType), (i64, UserType))]) -> (chatwire::server::RunningServer, Vec<i64>) {
    let path = format!("/tmp/ss-scratch-{}.db", std::process::id() as u64 * 1000 + rand_n());
    let url = format!("sqlite://{path}");
    let store = AnyStore::connect(&url, true).await.unwrap();
    let mut ids = vec![];
    for (a, b) in pairs {
        let (c, _) = store.create_direct(UserKey::new(a.1, a.0), UserKey::new(b.1, b.0)).await.unwrap();
        ids.push(c.id);
    }
    drop(store);
    let mut config = chatwire::config::Config::for_tests();
    config.rate_limit_conn_per_ip = 0;
    config.database_url = url;
    (chatwire::server::Server::start(&config, chatwire::server::Mode::Chat).await.unwrap(), ids)
}
fn rand_n() -> u64 { std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64 }

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch_all() {
    ensure_clients();
    let (server, ids) = server_with(&[((1, UserType::Influencer), (2, UserType::Brand)), ((11, UserType::Influencer), (12, UserType::Brand)), ((21, UserType::Brand), (22, UserType::Influencer)), ((31, UserType::Influencer), (32, UserType::Brand))]).await;
    let base = base_url(server.addr);
    eprintln!("ids {ids:?}");
    for mode in ["websocket"] {
        let envs = [("CONVERSATION_ID", ids[3].to_string()), ("A_ID", "31".into()), ("A_TYPE", "influencer".into()), ("B_ID", "32".into()), ("B_TYPE", "brand".into())];
        let r = run_script(&python(), "/tmp/ss-py-debug.py", &[mode], &base, &envs).await;
        eprintln!("== pydebug {mode}\n{}\n{}", r.stdout, r.stderr);
    }
    server.shutdown().await;
}
