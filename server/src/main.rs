//! The `chatwire` binary: `chatwire serve` (default) runs the chat server, `chatwire conformance`
//! the Socket.IO protocol test-suite setup. Prints `listening on <addr>` once bound; exits 0 after
//! a graceful shutdown on SIGTERM/SIGINT.

use chatwire::config::{Cli, Command};
use chatwire::{Mode, Server};

/// Counts the heap in use for `/metrics` (`heap-stats` builds only: one atomic add per
/// allocation).
#[cfg(feature = "heap-stats")]
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn main() -> anyhow::Result<()> {
    #[cfg(feature = "heap-stats")]
    chatwire::telemetry::set_heap_probe(|| ALLOCATOR.allocated());
    let command = Cli::parse_command();
    let (config, mode, format, level) = match command {
        Command::Serve(config) => {
            let (f, l) = (config.log_format, config.log_level.clone());
            (config, Mode::Chat, f, l)
        }
        Command::Conformance(args) => (
            args.to_config(),
            Mode::Conformance,
            args.log_format,
            args.log_level.clone(),
        ),
    };
    chatwire::telemetry::init_tracing(format, &level)?;
    chatwire::telemetry::install_metrics();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = Server::start(&config, mode).await?;
        println!("listening on {}", server.addr);
        tracing::info!(addr = %server.addr, shards = config.shard_count(), ?mode, "chatwire started");
        let (trigger, _watch) = chatwire::shutdown::channel();
        if let Err(e) = chatwire::shutdown::listen_for_signals(trigger).await {
            tracing::error!(error = %e, "cannot listen for signals");
        }
        server.shutdown().await;
        tracing::info!("chatwire stopped");
        anyhow::Ok(())
    })
}
