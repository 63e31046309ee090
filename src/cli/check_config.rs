//! `replisnap check-config --config F`: parse, validate, print the effective config with
//! secrets redacted.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::config::Config;

#[derive(Args, Debug)]
pub struct CheckConfigArgs {
    /// The configuration file.
    #[arg(long, value_name = "F")]
    pub config: PathBuf,
}

pub fn run(a: CheckConfigArgs) -> Result<ExitCode> {
    let c = Config::load(&a.config)?;
    // The password source must be usable too: a missing password file is a config error.
    c.source_password()?;
    print!("{}", toml::to_string(&c.redacted())?);
    Ok(ExitCode::SUCCESS)
}
