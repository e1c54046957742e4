//! Starting and stopping a server in-process: [`Server::start`] builds the store, the batch
//! writer, the shard threads and their `SO_REUSEPORT` listeners, and returns a [`RunningServer`]
//! with the bound address and a graceful [`RunningServer::shutdown`]. The binary and the tests
//! both go through here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chatwire_protocol::config::{EngineConfig, ProtocolConfig, SocketConfig};

use crate::app::ChatShared;
use crate::app::commit::{Committer, ShardSink};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::origin::OriginPolicy;
use crate::ratelimit::ConnectionLimiter;
use crate::shard::msg::ShardSet;
pub use crate::shared::{Mode, Shared};
use crate::shutdown::ShutdownTrigger;
use chatwire_chat::ChatConfig;
use chatwire_chat::validate::MessageLimits;
use chatwire_cluster::{Adapter, LocalAdapter, RedisAdapter, RedisConfig};
use chatwire_store::AnyStore;
use chatwire_store::batch::{BatchConfig, BatchWriter};

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound address (the resolved port when started on port 0).
    pub addr: SocketAddr,
    /// Stops the accept loops.
    stop_accepting: ShutdownTrigger,
    /// Closes every client and ends the shard threads.
    shutdown: ShutdownTrigger,
    /// Shard threads.
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Where messages are stored (chat mode).
    writer: Option<Committer>,
    /// The store (chat mode), for tests and tools that seed data.
    store: Option<Arc<AnyStore>>,
}

impl RunningServer {
    /// The store the server runs on (None in conformance mode).
    pub fn store(&self) -> Option<Arc<AnyStore>> {
        self.store.clone()
    }

    /// Graceful shutdown: stop accepting, commit every queued message (its sender still gets
    /// `message:sent`), send Engine.IO close to every client, join the shard threads.
    pub async fn shutdown(mut self) {
        self.stop_accepting.trigger();
        if let Some(writer) = self.writer.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), writer.flush_and_stop()).await;
            // Let the shards deliver the last commit replies.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.shutdown.trigger();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Entry point for starting servers.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Starts a server for `config` in `mode`, listening on `config.listen_addr()`; refuses a
    /// configuration that fails [`Config::check`].
    pub async fn start(config: &Config, mode: Mode) -> anyhow::Result<RunningServer> {
        let adapter: Arc<dyn Adapter> = match config.redis_url.as_deref() {
            Some(url) if !url.is_empty() => Arc::new(RedisAdapter::start(
                RedisConfig::new(url).with_prefix(config.redis_key_prefix.clone()),
            )?),
            _ => Arc::new(LocalAdapter),
        };
        Self::start_with_adapter(config, mode, adapter).await
    }

    /// [`Server::start`] with the cluster adapter given (tests wrap the local one to record
    /// every room operation).
    pub async fn start_with_adapter(
        config: &Config,
        mode: Mode,
        adapter: Arc<dyn Adapter>,
    ) -> anyhow::Result<RunningServer> {
        config.check()?;
        let fleet = crate::fleet::Fleet::from_config(config)?;
        let shards = config.shard_count().clamp(1, 64);
        let protocol = ProtocolConfig::default()
            .with_engine(
                EngineConfig::default()
                    .with_ping_interval(config.ping_interval())
                    .with_ping_timeout(config.ping_timeout())
                    .with_upgrade_timeout(config.upgrade_timeout())
                    .with_max_payload(config.max_payload),
            )
            .with_socket(SocketConfig::default().with_connect_timeout(config.connect_timeout()));
        let mut senders = Vec::with_capacity(shards);
        let mut receivers = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (tx, rx) = flume::bounded(crate::shard::SHARD_CHANNEL);
            senders.push(tx);
            receivers.push(rx);
        }
        let set = ShardSet::new(senders);
        adapter.attach(Arc::new(set.clone()));
        let (chat, writer) = match mode {
            Mode::Chat => {
                let store =
                    Arc::new(AnyStore::connect(&config.database_url, !config.no_migrate).await?);
                let auth = Authenticator::from_config(config)?;
                let batch = BatchConfig::default()
                    .with_queue_capacity(config.write_queue.max(1))
                    .with_max_batch(config.write_batch_max.max(1))
                    .with_lanes(config.write_lanes.max(1))
                    .with_window(config.write_batch_window())
                    .with_commit_deadline(Duration::from_millis(config.write_deadline_ms));
                // The memory store commits inline on the room's owner shard: no writer thread.
                let writer = match &*store {
                    AnyStore::Memory(_) => Committer::Inline(store.clone()),
                    _ => Committer::Writer(BatchWriter::spawn(
                        store.clone(),
                        batch,
                        ShardSink::new(set.clone()),
                    )),
                };
                let chat = ChatShared {
                    auth,
                    store,
                    committer: writer.clone(),
                    config: ChatConfig {
                        max_message_chars: config.max_message_chars,
                        max_json_depth: protocol.socket.max_json_depth,
                    },
                    rate: (config.rate_limit_per_socket, config.rate_limit_burst),
                    user_rate: config.rate_limit_per_user,
                    recovery_window: std::time::Duration::from_secs(config.recovery_window),
                    recovery_max_events: config.recovery_max_events,
                };
                (Some(chat), Some(writer))
            }
            Mode::Conformance => (None, None),
        };
        let store = chat.as_ref().map(|c| c.store.clone());
        // Read before the shards run (other nodes' messages wait in their channels meanwhile).
        let order_floor = match &store {
            Some(store) if adapter.cluster_connected().is_some() => {
                store.newest_message_id().await?
            }
            _ => 0,
        };
        let rest = chat.as_ref().map(|c| crate::rest::RestContext {
            store: c.store.clone(),
            writer: c.committer.clone(),
            live: Arc::new(crate::http::rest::ShardLive),
            limits: crate::rest::RestLimits::default()
                .with_max_participants(config.max_participants)
                .with_message(MessageLimits::default().with_max_chars(config.max_message_chars)),
        });
        let (stop_trigger, stop_accepting) = crate::shutdown::channel();
        let (shutdown_trigger, shutdown) = crate::shutdown::channel();
        let conn_limiter = (config.rate_limit_conn_per_ip > 0).then(|| {
            ConnectionLimiter::new(
                config.rate_limit_conn_per_ip,
                config.rate_limit_conn_burst.max(1),
            )
        });
        let shared = Arc::new(Shared {
            mode,
            protocol,
            outbound_frames: config.outbound_queue.max(16),
            outbound_bytes: config.max_payload.saturating_mul(4).max(1 << 20),
            ws_read_buffer: crate::shared::WS_READ_BUFFER,
            header_read_timeout: config.header_read_timeout(),
            origin: OriginPolicy::from_config(config),
            fleet,
            conn_limiter,
            demo: chat
                .as_ref()
                .map(|_| crate::http::demo::Demo::from_config(config)),
            session_caps: crate::http::sessions::SessionCaps::new(
                config.max_sessions_per_ip,
                config.max_sessions,
            ),
            max_handshakes_per_connection: config.max_handshakes_per_connection.max(1),
            body_read_timeout: config.body_read_timeout(),
            rest_limits: crate::rest::limits::RestRateLimits::new(crate::rest::limits::RestRates {
                sends: config.rate_limit_rest_sends,
                creates: config.rate_limit_rest_creates,
                searches: config.rate_limit_rest_searches,
                reads: config.rate_limit_rest_reads,
                ip_factor: config.rate_limit_rest_ip_factor,
            }),
            chat,
            adapter,
            order_floor,
            rest,
            liveness: Arc::default(),
            stop_accepting,
            shutdown,
        });
        let (listeners, addr) = crate::shard::listener::bind_shared(config.listen_addr(), shards)?;
        let mut threads = Vec::with_capacity(shards);
        for (i, (listener, rx)) in listeners.into_iter().zip(receivers).enumerate() {
            let shared = shared.clone();
            let set = set.clone();
            let index = u16::try_from(i).unwrap_or(u16::MAX);
            let handle = std::thread::Builder::new()
                .name(format!("chatwire-shard-{i}"))
                .spawn(move || {
                    if let Err(e) = crate::worker::run_shard(index, listener, rx, shared, set) {
                        tracing::error!(shard = i, error = %e, "shard stopped with an error");
                    }
                })?;
            threads.push(handle);
        }
        Ok(RunningServer {
            addr,
            stop_accepting: stop_trigger,
            shutdown: shutdown_trigger,
            threads,
            writer,
            store,
        })
    }
}
