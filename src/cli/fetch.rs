//! `replisnap fetch --config F ID|latest OUT [--json]`: copy a stored snapshot out of
//! storage into OUT, checked on the way; `fetch --config F --at TIME|--offset N OUT`
//! builds the file of that point from the stream archive instead (`point.rs`).
//!
//! Owns the download side of a restore: the bytes are hashed as they arrive and OUT appears
//! (0600, fsynced, renamed into place) only once the length, SHA-256 and RDB CRC-64 match
//! the manifest; `--verify` also parses it and compares its digest. It must never leave a
//! partial or unchecked file under OUT.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::atomic_file::AtomicFile;
use crate::storage::resolve;

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// The configuration file (its [storage] section is read).
    #[arg(long, value_name = "F", env = "REPLISNAP_CONFIG", default_value = super::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// `ID|latest OUT`: a snapshot id as `list` shows it (or `latest`) and where to write
    /// the RDB; with --at or --offset only OUT.
    #[arg(value_name = "[ID] OUT", num_args = 1..=2, required = true)]
    pub args: Vec<String>,
    #[command(flatten)]
    pub point: super::point::PointArgs,
    /// Also write the snapshot's manifest here.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["at", "offset"])]
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

fn usage(msg: &str) -> ! {
    <super::Cli as clap::CommandFactory>::command()
        .error(clap::error::ErrorKind::WrongNumberOfValues, msg)
        .exit()
}

pub fn run(a: FetchArgs) -> Result<ExitCode> {
    let (id, out_path) = match (a.point.target()?, a.args.as_slice()) {
        (Some(target), [out]) => {
            let (_, storage) = super::list::open_storage(&a.config)?;
            return point(&a, storage.as_ref(), target, std::path::Path::new(out));
        }
        (None, [id, out]) => (id.clone(), PathBuf::from(out)),
        (Some(_), _) => usage("fetch --at/--offset takes only OUT (no snapshot id)"),
        (None, _) => usage("fetch takes ID|latest and OUT"),
    };
    let (cfg, storage) = super::list::open_storage(&a.config)?;
    if cfg.source.cluster {
        return super::sets::fetch(&cfg, storage.as_ref(), &id, &out_path, a.verify, a.json);
    }
    let where_ = storage.describe();
    let m = resolve(storage.as_ref(), &id).with_context(|| where_.clone())?;
    let id = m.id.to_string();
    let out_name = out_path.display().to_string();
    let stored = super::download::copy_checked(storage.as_ref(), &m, &out_path)?;
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
        let problems = super::download::verify_file(&m, &out_path, &stored)?;
        if !problems.is_empty() {
            for p in &problems {
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

/// `fetch --at|--offset`: build the point's file from the snapshot and the archive.
fn point(
    a: &FetchArgs,
    storage: &dyn crate::storage::Storage,
    target: crate::pitr::Target,
    out: &std::path::Path,
) -> Result<ExitCode> {
    let out_name = out.display().to_string();
    let doc = super::point::build(storage, target, a.point.history.as_deref(), out)?;
    let mut verified = false;
    if a.verify {
        // Read back what was written, as `verify FILE` does: whole parse, CRC, and the
        // digest as of the point's time.
        let f = std::fs::File::open(out).with_context(|| format!("{out_name}: reopen"))?;
        let report =
            crate::verify::check_stream(&out_name, f, Some(doc.bytes), None, doc.time_ms, |_| {})?;
        let mut problems = report.problems.clone();
        if report.digest.as_deref() != Some(doc.digest.as_str()) {
            problems.push(format!(
                "reads back with digest {}, built with {}",
                report.digest.as_deref().unwrap_or("(none)"),
                doc.digest
            ));
        }
        if !problems.is_empty() {
            for p in &problems {
                eprintln!("error: {out_name}: {p}");
            }
            return Ok(ExitCode::from(1));
        }
        verified = true;
    }
    if a.json {
        #[derive(Serialize)]
        struct Doc<'a> {
            out: &'a str,
            verified: bool,
            #[serde(flatten)]
            point: &'a super::point::PointDoc,
        }
        let d = Doc {
            out: &out_name,
            verified,
            point: &doc,
        };
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        println!(
            "{}{}",
            doc.line(&out_name),
            if verified {
                ", read back and verified"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
