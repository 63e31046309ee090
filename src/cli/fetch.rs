//! `replisnap fetch --config F ID|latest OUT [--json]`: copy a stored snapshot out of
//! storage into OUT, checked on the way.
//!
//! Owns the download side of a restore: the bytes are hashed as they arrive and OUT appears
//! (0600, fsynced, renamed into place) only once the length, SHA-256 and RDB CRC-64 match
//! the manifest; `--verify` also parses it and compares its digest. It must never leave a
//! partial or unchecked file under OUT.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::progress::Progress;
use crate::atomic_file::AtomicFile;
use crate::storage::{resolve, ObjectHasher};

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// The configuration file (its [storage] section is read).
    #[arg(long, value_name = "F", env = "REPLISNAP_CONFIG", default_value = super::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// A snapshot id as `list` shows it, or `latest`.
    pub id: String,
    /// Where to write the RDB.
    pub out: PathBuf,
    /// Also write the snapshot's manifest here.
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Also parse the file and compare its digest and key count with the manifest.
    #[arg(long)]
    pub verify: bool,
    /// Print one JSON document summarising what was fetched.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Fetched<'a> {
    id: &'a str,
    out: String,
    bytes: u64,
    sha256: &'a str,
    crc64: &'a str,
    digest: &'a str,
    verified: bool,
}

pub fn run(a: FetchArgs) -> Result<ExitCode> {
    let (_, storage) = super::list::open_storage(&a.config)?;
    let where_ = storage.describe();
    let m = resolve(storage.as_ref(), &a.id).with_context(|| where_.clone())?;
    let id = m.id.to_string();
    let out_name = a.out.display().to_string();
    let mut input = storage
        .open_rdb(&m.id)
        .with_context(|| format!("{where_}: snapshot {id}"))?;
    let mut out =
        AtomicFile::create(&a.out).with_context(|| format!("{out_name}: cannot create"))?;
    let mut hasher = ObjectHasher::new();
    let mut progress = Progress::bytes(m.rdb.bytes);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input
            .read(&mut buf)
            .with_context(|| format!("{where_}: snapshot {id}: read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("{out_name}: write"))?;
        progress.set(hasher.bytes());
    }
    progress.finish();
    let stored = hasher.finish();
    m.check_describes(&m.id, &stored)
        .with_context(|| format!("{where_}: snapshot {id}: not written to {out_name}"))?;
    out.commit()
        .with_context(|| format!("{out_name}: cannot put in place"))?;
    if let Some(p) = &a.manifest {
        let json = m
            .to_json()
            .map_err(|e| anyhow::anyhow!("snapshot {id}: manifest: {e}"))?;
        let mut f =
            AtomicFile::create(p).with_context(|| format!("{}: cannot create", p.display()))?;
        f.write_all(&json)
            .and_then(|()| f.commit())
            .with_context(|| format!("{}: cannot write", p.display()))?;
    }
    if a.verify {
        let f = std::fs::File::open(&a.out).with_context(|| format!("{out_name}: reopen"))?;
        let report = crate::verify::check_stream(
            &id,
            f,
            Some(stored.bytes),
            Some(&m),
            super::now_ms(),
            |_| {},
        )?;
        if !report.ok() {
            for p in &report.problems {
                eprintln!("error: snapshot {id} ({out_name}): {p}");
            }
            return Ok(ExitCode::from(1));
        }
    }
    if a.json {
        let doc = Fetched {
            id: &id,
            out: out_name,
            bytes: stored.bytes,
            sha256: &stored.sha256,
            crc64: &m.rdb.crc64,
            digest: &m.digest,
            verified: a.verify,
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "{id}: {} bytes to {out_name}, sha256 and CRC-64 checked{}",
            stored.bytes,
            if a.verify { ", digest verified" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
