//! `replisnap verify --config F ID|latest|--all` and `replisnap verify FILE [--manifest M]`:
//! prove snapshots good (`crate::verify`), optionally against a real server (`--server`).
//! With `[source] cluster = true` the ids are snapshot sets: every shard's snapshot of a set
//! is checked as one snapshot is, and against what the set recorded (digest, offset).
//!
//! Owns the verb's contract: one `error:` line per problem, each naming the snapshot and what
//! differs; exit 0 when every snapshot checked is good, 1 when one is not (or cannot be
//! read), 2 on bad usage. It must never print anything but the JSON document on stdout with
//! `--json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::progress::Progress;
use crate::storage::{resolve, Manifest, Storage};
use crate::verify::{check_server, check_stream, Report};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The configuration file (its [storage] section is read); without it, TARGET is a file.
    #[arg(long, value_name = "F")]
    pub config: Option<PathBuf>,
    /// A snapshot id, `latest`, or (without --config) an RDB file.
    #[arg(required_unless_present_any = ["all", "archive"])]
    pub target: Option<String>,
    /// Every snapshot in storage.
    #[arg(long, requires = "config", conflicts_with = "target")]
    pub all: bool,
    /// The stream archive instead: every segment read back (checksums, offsets, names)
    /// and each history checked for missing or doubled offsets.
    #[arg(long, requires = "config", conflicts_with_all = ["target", "all", "server"])]
    pub archive: bool,
    /// The manifest to check FILE against (a file as `fetch --manifest` writes it).
    #[arg(long, value_name = "M", conflicts_with = "config")]
    pub manifest: Option<PathBuf>,
    /// Also load it into this redis-server / valkey-server binary on a temporary loopback
    /// port and compare that server's DEBUG DIGEST and key count.
    #[arg(long, value_name = "PATH")]
    pub server: Option<PathBuf>,
    /// Seconds to wait for that server to load the file.
    #[arg(long, value_name = "S", default_value_t = 600)]
    pub server_timeout: u64,
    /// Print one JSON array of reports.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: VerifyArgs) -> Result<ExitCode> {
    if let (true, Some(config)) = (a.archive, &a.config) {
        return archive(config, a.json);
    }
    let timeout = Duration::from_secs(a.server_timeout);
    let mut reports = Vec::new();
    match &a.config {
        None => {
            let file = PathBuf::from(a.target.as_deref().unwrap_or_default());
            let manifest = match &a.manifest {
                Some(p) => {
                    let data = std::fs::read(p)
                        .with_context(|| format!("{}: cannot read", p.display()))?;
                    Some(Manifest::from_json(&data, &p.display().to_string())?)
                }
                None => None,
            };
            reports.push(verify_file(
                &file,
                manifest.as_ref(),
                a.server.as_deref(),
                timeout,
            )?);
        }
        Some(config) => {
            let (cfg, storage) = super::list::open_storage(config)?;
            let where_ = storage.describe();
            if cfg.source.cluster {
                reports.extend(verify_sets(&cfg, storage.as_ref(), &a, timeout)?);
            }
            let manifests = if cfg.source.cluster {
                Vec::new()
            } else if a.all {
                let listing = storage.list().with_context(|| where_.clone())?;
                for p in &listing.problems {
                    eprintln!("error: snapshot {}: {}", p.id, p.error);
                }
                if !listing.problems.is_empty() {
                    reports.extend(listing.problems.iter().map(|p| Report {
                        name: p.id.to_string(),
                        bytes: 0,
                        sha256: String::new(),
                        crc64: String::new(),
                        digest: None,
                        target: None,
                        keys: None,
                        server: None,
                        problems: vec![p.error.to_string()],
                    }));
                }
                listing.snapshots
            } else {
                let arg = a.target.as_deref().unwrap_or("latest");
                vec![resolve(storage.as_ref(), arg).with_context(|| where_.clone())?]
            };
            for m in &manifests {
                reports.push(verify_stored(
                    storage.as_ref(),
                    m,
                    a.server.as_deref(),
                    timeout,
                )?);
            }
        }
    }
    let good = reports.iter().all(Report::ok);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    for r in &reports {
        for p in &r.problems {
            eprintln!("error: {}: {p}", r.name);
        }
        if r.ok() && !a.json {
            println!(
                "{}: ok ({} bytes, {} keys, digest {} for {}{})",
                r.name,
                r.bytes,
                r.keys.unwrap_or(0),
                r.digest.as_deref().unwrap_or("?"),
                r.target.as_deref().unwrap_or("?"),
                r.server
                    .as_ref()
                    .map(|s| format!(", loaded by {}", s.version))
                    .unwrap_or_default()
            );
        }
    }
    Ok(if good {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn verify_file(
    file: &Path,
    manifest: Option<&Manifest>,
    server: Option<&Path>,
    timeout: Duration,
) -> Result<Report> {
    let name = file.display().to_string();
    let f = std::fs::File::open(file).with_context(|| format!("{name}: cannot open"))?;
    let len = f
        .metadata()
        .with_context(|| format!("{name}: cannot stat"))?
        .len();
    let mut progress = Progress::bytes(len);
    let mut report = check_stream(&name, f, Some(len), manifest, super::now_ms(), |p| {
        progress.set(p)
    })?;
    progress.finish();
    if let Some(bin) = server {
        check_server(&mut report, bin, file, timeout)?;
    }
    Ok(report)
}

/// A report that is only a problem (nothing could be read).
fn problem_report(name: String, problem: String) -> Report {
    Report {
        name,
        bytes: 0,
        sha256: String::new(),
        crc64: String::new(),
        digest: None,
        target: None,
        keys: None,
        server: None,
        problems: vec![problem],
    }
}

/// The sets `a` names (`--all`: every one), each shard's snapshot verified; one report per
/// shard, named `set ID shard SLOTS`.
fn verify_sets(
    cfg: &crate::config::Config,
    root: &dyn Storage,
    a: &VerifyArgs,
    timeout: Duration,
) -> Result<Vec<Report>> {
    use crate::storage::set;
    let storage_cfg = cfg
        .storage
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no [storage] section"))?;
    let mut reports = Vec::new();
    let sets = if a.all {
        let (sets, problems) = set::list(root).with_context(|| root.describe())?;
        for (key, e) in problems {
            reports.push(problem_report(key, e.to_string()));
        }
        sets
    } else {
        let arg = a.target.as_deref().unwrap_or("latest");
        vec![super::sets::resolve(root, arg)?]
    };
    for s in &sets {
        if !s.missing_slots.is_empty() {
            reports.push(problem_report(
                format!("set {}", s.id),
                format!("slots owned by no shard: {:?}", s.missing_slots),
            ));
        }
        for x in &s.shards {
            let name = format!("set {} shard {}", s.id, x.shard);
            let Some(sid) = &x.snapshot else {
                let why = x.error.as_deref().unwrap_or("no snapshot stored");
                reports.push(problem_report(name, format!("no snapshot: {why}")));
                continue;
            };
            let r = (|| -> Result<Report> {
                let st = crate::storage::open(&set::shard_storage(storage_cfg, &x.shard))?;
                let m = st
                    .get_manifest(sid)
                    .with_context(|| format!("{}: snapshot {sid}", st.describe()))?;
                let mut r = verify_stored(st.as_ref(), &m, a.server.as_deref(), timeout)?;
                if m.digest != x.digest {
                    r.problems.push(format!(
                        "snapshot {sid}: manifest digest {} but the set recorded {}",
                        m.digest, x.digest
                    ));
                }
                if m.source.offset != x.offset || m.source.replid != x.replid {
                    r.problems.push(format!(
                        "snapshot {sid}: manifest at {}:{} but the set recorded {}:{}",
                        m.source.replid, m.source.offset, x.replid, x.offset
                    ));
                }
                Ok(r)
            })();
            reports.push(match r {
                Ok(mut r) => {
                    r.name = name;
                    r
                }
                Err(e) => problem_report(name, format!("{e:#}")),
            });
        }
    }
    Ok(reports)
}

/// A stored snapshot: read from storage (to a temporary file when a server must load it).
fn verify_stored(
    storage: &dyn Storage,
    m: &Manifest,
    server: Option<&Path>,
    timeout: Duration,
) -> Result<Report> {
    let id = m.id.to_string();
    let where_ = storage.describe();
    let input = storage
        .open_rdb(&m.id)
        .with_context(|| format!("{where_}: snapshot {id}"))?;
    let mut progress = Progress::bytes(m.rdb.bytes);
    let Some(bin) = server else {
        let r = check_stream(&id, input, None, Some(m), super::now_ms(), |p| {
            progress.set(p)
        })?;
        progress.finish();
        return Ok(r);
    };
    // The server needs a file: copy it once, checking it on the way.
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = std::env::temp_dir().join(format!("replisnap-verify-{}-{id}", std::process::id()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("{}: cannot create", dir.display()))?;
    let path = dir.join("dump.rdb");
    let result = (|| -> Result<Report> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        let mut tee = TeeWrite { input, out: &mut f };
        let mut r = check_stream(&id, &mut tee, None, Some(m), super::now_ms(), |p| {
            progress.set(p)
        })?;
        drop(f);
        check_server(&mut r, bin, &path, timeout)?;
        Ok(r)
    })();
    progress.finish();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Bytes read from storage, copied to a file as they pass.
struct TeeWrite<'a, R> {
    input: R,
    out: &'a mut std::fs::File,
}

impl<R: std::io::Read> std::io::Read for TeeWrite<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        std::io::Write::write_all(self.out, &buf[..n])?;
        Ok(n)
    }
}

/// `verify --config F --archive`: every segment read back, each history's continuity.
fn archive(config: &Path, json: bool) -> Result<ExitCode> {
    let (_, storage) = super::list::open_storage(config)?;
    let where_ = storage.describe();
    let mut progress = Progress::bytes(0);
    let check = crate::archive::verify(storage.as_ref(), |n| progress.set(n))
        .with_context(|| where_.clone())?;
    progress.finish();
    if json {
        println!("{}", serde_json::to_string_pretty(&check)?);
    } else {
        for h in &check.histories {
            println!(
                "history {}: offsets {}..{}, {} segments, {} stored bytes ({} stream bytes){}",
                h.name,
                h.first_offset,
                h.end_offset,
                h.segments,
                h.bytes,
                h.stream_bytes,
                if h.problems.is_empty() { ", good" } else { "" }
            );
        }
        if check.histories.is_empty() {
            println!("(no archive)");
        }
    }
    for k in &check.unknown {
        eprintln!("warning: {where_}: {k}: not an archive segment");
    }
    for h in &check.histories {
        for p in &h.problems {
            eprintln!("error: archive history {}: {p}", h.name);
        }
    }
    Ok(if check.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
