//! `replisnap digest FILE [--target SERVER-VERSION]`: the `DEBUG DIGEST` a server of that
//! version answers after loading FILE, computed from the file alone.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::progress::Progress;
use crate::digest::{digest_rdb, DigestOptions};
use crate::server_version::ServerVersion;

#[derive(Args, Debug)]
pub struct DigestArgs {
    /// The RDB file to read.
    pub file: PathBuf,
    /// The server whose answer to compute, e.g. redis-7.0 or valkey-9.1 (default: the
    /// server that wrote FILE, from its magic and aux fields).
    #[arg(long, value_name = "SERVER-VERSION")]
    pub target: Option<ServerVersion>,
    /// Read RDB versions newer than this build knows, like Valkey's
    /// `rdb-version-check relaxed` (which the target is then assumed to run with).
    #[arg(long)]
    pub relaxed: bool,
    /// Judge expiries as of this Unix time in milliseconds instead of now.
    #[arg(long, value_name = "UNIX_MS")]
    pub now_ms: Option<i64>,
    /// The target's `databases` setting.
    #[arg(long, value_name = "N", default_value_t = crate::digest::target::DEFAULT_DATABASES)]
    pub databases: u64,
}

pub fn run(a: DigestArgs) -> Result<ExitCode> {
    let (reader, len, name) = super::open_rdb(&a.file, a.relaxed)?;
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("{name}: {e}");
    let mut dopts = DigestOptions::new(a.now_ms.unwrap_or_else(super::now_ms));
    dopts.target = a.target;
    dopts.relaxed = a.relaxed;
    dopts.databases = a.databases;
    let mut progress = Progress::bytes(len);
    let report = digest_rdb(reader, &dopts, |pos| progress.set(pos)).map_err(|e| fail(&e));
    progress.finish();
    println!("{}", report?.hex());
    Ok(ExitCode::SUCCESS)
}
