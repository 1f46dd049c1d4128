//! The `gatehouse` binary: configuration, CLI and wiring. Everything that
//! decides lives in the library crates; this crate only connects them.

mod admin;
mod attachment_links;
mod cli;
mod config;
mod file_modes;
mod mail;
mod serve;
mod simulate;
mod smtp_tls;

use clap::Parser;
use cli::args::{Cli, ClusterCmd, Command};
use config::NodeConfig;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve | Command::Join { .. }) {
        end_quietly_when_stdout_closes();
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `gatehouse queue list | head`: when the reader goes away the command
/// ends as `ls` or `cat` would, without a word, instead of panicking in
/// `println!` (Rust ignores SIGPIPE by default). Never for the server, whose
/// sockets must report a closed peer as an error, not kill the process.
fn end_quietly_when_stdout_closes() {
    // SAFETY: restores the default action of one signal, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = NodeConfig::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    match cli.command {
        Command::Serve => runtime(&config, serve::run(config.clone(), serve::Bootstrap::NewCluster)),
        Command::Join { token, seed } => {
            runtime(&config, serve::run(config.clone(), serve::Bootstrap::Join { token, seed }))
        }
        Command::Cluster(ClusterCmd::Init) => {
            let cluster_id = runtime(&config, serve::init_only(config.clone()))?;
            println!("initialised cluster {cluster_id} in {}", config.data_dir.display());
            Ok(())
        }
        Command::Simulate { seed, seeds, nodes, faults, steps } => {
            simulate::run(seed, seeds.as_deref(), nodes as usize, &faults, steps, cli.json)
        }
        Command::DovecotCheckpassword { reply } => {
            cli::dovecot::checkpassword(&config, cli.token_file.as_deref(), &reply)
        }
        Command::Dmarc(cli::args::DmarcCmd::Record { domain, policy, rua, pct }) => {
            cli::dmarc::print_record(&domain, &policy, rua.as_deref(), pct, cli.json)
        }
        other => cli::run_admin_command(&other, &config, cli.json, cli.token_file.as_deref()),
    }
}

fn runtime<T>(config: &NodeConfig, fut: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.filter));
    // Colours only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(fut)
}
