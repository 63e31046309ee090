//! `replisnap convert IN OUT [--target SERVER-VERSION]`: rewrite an RDB for a server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::progress::Progress;
use crate::atomic_file::AtomicFile;
use crate::convert::convert;
use crate::rdb::writer::WriteOptions;
use crate::server_version::ServerVersion;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The RDB file to read.
    pub input: PathBuf,
    /// Where to write the new file (replaced atomically).
    pub output: PathBuf,
    /// The server that will load OUT: redis-6.2, redis-7.0, redis-8.2, valkey-8.1,
    /// valkey-9.1, … (default: the server that wrote IN).
    #[arg(long, value_name = "SERVER-VERSION")]
    pub target: Option<ServerVersion>,
    /// Do not LZF-compress strings (like `rdbcompression no`).
    #[arg(long)]
    pub no_compress: bool,
    /// Read RDB versions newer than this build knows (see `inspect --relaxed`).
    #[arg(long)]
    pub relaxed: bool,
}

pub fn run(a: ConvertArgs) -> Result<ExitCode> {
    let (reader, len, name) = super::open_rdb(&a.input, a.relaxed)?;
    let out_name = a.output.display().to_string();
    let out =
        AtomicFile::create(&a.output).with_context(|| format!("{out_name}: cannot create"))?;
    let progress = Progress::bytes(len);
    let wopts = WriteOptions {
        compress: !a.no_compress,
    };
    let (out, report) =
        convert(reader, out, a.target, wopts).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    progress.finish();
    out.commit()
        .with_context(|| format!("{out_name}: cannot write"))?;
    eprintln!(
        "wrote {out_name}: {} keys for {} ({} bytes{})",
        report.keys_written,
        report.target,
        report.bytes,
        if report.empty_skipped > 0 {
            format!(
                ", {} empty collections left out as servers drop them",
                report.empty_skipped
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
