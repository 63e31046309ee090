//! `replisnap run --config F`: the daemon's verb. Loads the config, sets up logging, and
//! hands over to [`crate::daemon::run`], which owns everything the daemon does.
//!
//! Owns the verb's contract: exit 0 after a clean stop (SIGTERM/SIGINT), 1 with one
//! `error:` line when the daemon cannot start or a part of it failed. It must never wire
//! parts of the daemon itself.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::config::Config;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, value_name = "F", env = "REPLISNAP_CONFIG", default_value = super::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// For a cluster shared by several processes (`[source] cluster_instances = N`): this
    /// process's instance, 0 to N-1 (a systemd template's `%i`, a StatefulSet ordinal).
    #[arg(long, value_name = "K")]
    pub instance: Option<u32>,
    /// Listen here instead of `[http] listen` (instances of one config on one node each
    /// need a port of their own).
    #[arg(long, value_name = "ADDR", env = "REPLISNAP_HTTP_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
}

pub fn run(a: RunArgs) -> Result<ExitCode> {
    let mut cfg = Config::load(&a.config)?;
    if let Some(k) = a.instance {
        let shown = a.config.display();
        match cfg.source.cluster_instances {
            Some(n) if k < n => cfg.source.cluster_instance = Some(k),
            Some(n) => {
                anyhow::bail!("--instance {k}: not below {shown}'s source.cluster_instances ({n})")
            }
            None => anyhow::bail!("--instance {k}: {shown} sets no source.cluster_instances"),
        }
    }
    if let Some(l) = a.listen {
        cfg.http.listen = l;
    }
    init_logging();
    crate::daemon::run(&cfg, &a.config.display().to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Logs to stderr (journald picks them up under systemd); `RUST_LOG` sets the level.
/// Colours only on a terminal: journald and log files get plain `key=value` fields.
fn init_logging() {
    use std::io::IsTerminal;
    // The scheduler crate logs its own start-up steps at info; they say nothing to an operator.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_cron_scheduler=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
