//! `replisnap check-config --config F`: parse, validate, print the effective config with
//! secrets redacted.
//!
//! Owns the verb's contract: exit 0 only for a config `run` would accept. It runs the
//! daemon's own checks ([`crate::daemon::check`]: password file, TLS files, cron
//! expressions and zones, retention, storage settings), so the two cannot drift. It must
//! never bind a port, claim or touch storage, or contact the master: it may run beside
//! the daemon it checks.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::config::Config;

#[derive(Args, Debug)]
pub struct CheckConfigArgs {
    /// The configuration file.
    #[arg(long, value_name = "F", env = "REPLISNAP_CONFIG", default_value = super::DEFAULT_CONFIG)]
    pub config: PathBuf,
}

pub fn run(a: CheckConfigArgs) -> Result<ExitCode> {
    let c = Config::load(&a.config)?;
    crate::daemon::check(&c, &a.config.display().to_string())?;
    print!("{}", toml::to_string(&c.redacted())?);
    Ok(ExitCode::SUCCESS)
}
