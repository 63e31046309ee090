//! `replisnap run --config F`: the daemon. Today it attaches as a replica and follows the
//! master; snapshots, storage and HTTP join it in later issues.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tracing::info;

use crate::config::Config;
use crate::replication::tls::TlsSettings;
use crate::replication::{Replica, Settings};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, value_name = "F")]
    pub config: PathBuf,
}

pub fn run(a: RunArgs) -> Result<ExitCode> {
    let cfg = Config::load(&a.config)?;
    init_logging();
    if cfg.source.tls.is_some() {
        anyhow::bail!(
            "{}: [source.tls] is not supported by this build yet",
            a.config.display()
        );
    }
    let password = cfg.source_password()?;
    let settings = Settings {
        address: cfg.source.address.clone(),
        username: cfg.source.username.clone(),
        password,
        announce_port: cfg.replica.announce_port,
        psync_command: cfg
            .source
            .psync_command
            .clone()
            .unwrap_or_else(|| "PSYNC".into()),
        connect_timeout: Duration::from_secs(10),
        tls: cfg.source.tls.as_ref().map(|t| TlsSettings {
            ca_file: t.ca_file.clone(),
            cert_file: t.cert_file.clone(),
            key_file: t.key_file.clone(),
            server_name: t.server_name.clone(),
            insecure_skip_verify: t.insecure_skip_verify,
        }),
    };
    info!(address = %settings.address, version = env!("CARGO_PKG_VERSION"), "replisnap starting");
    let (replica, _handle) = Replica::new(settings);
    std::thread::Builder::new()
        .name("replica".into())
        .spawn(move || replica.run())
        .context("cannot start the replica thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the replica thread panicked"))?;
    Ok(ExitCode::SUCCESS)
}

/// Logs to stderr (journald picks them up under systemd); `RUST_LOG` sets the level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
