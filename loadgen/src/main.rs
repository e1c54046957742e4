//! `chatwire-loadgen run ...` drives simulated chat users; `chatwire-loadgen merge a b` combines
//! the result files of several processes. Exit status 1 when a threshold fails.

use chatwire_loadgen::cli::{Cli, Command};
use clap::Parser as _;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Merge(args) => chatwire_loadgen::merge(&args)?,
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(chatwire_loadgen::run(&args))?
        }
    };
    if !outcome.failures.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
