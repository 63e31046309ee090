//! `replisnap restore (--config F ID|latest | --from FILE) --to redis[s]://[user:pass@]host:port`:
//! push every key of a snapshot into a live server (`crate::restore`).
//!
//! Owns the verb: where the RDB comes from (storage, checked against its manifest as it is
//! read, or a file), the target's TLS and credentials, the refusal of a non-empty target
//! (`--if-target-empty` makes that a success for container entrypoints), and the check after:
//! the target's key count and, where it answers `DEBUG DIGEST`, its digest against the digest
//! of what was sent. Exit 1 on any difference. It must never print anything but the JSON
//! document on stdout with `--json`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::progress::Progress;
use crate::rdb::{Options, RdbReader};
use crate::replication::tls::TlsSettings;
use crate::restore::{restore, Conn, RestoreOptions, TargetUrl};
use crate::storage::hash::HashingReader;
use crate::storage::{resolve, ObjectHasher};

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The configuration file (its [storage] section is read).
    #[arg(long, value_name = "F", conflicts_with = "from")]
    pub config: Option<PathBuf>,
    /// A snapshot id as `list` shows it, or `latest` (with --config).
    #[arg(conflicts_with_all = ["at", "offset"])]
    pub id: Option<String>,
    /// With --config: restore the state at a point from the stream archive.
    #[command(flatten)]
    pub point: super::point::PointArgs,
    /// Restore this RDB file instead of a stored snapshot.
    #[arg(long, value_name = "FILE", required_unless_present = "config")]
    pub from: Option<PathBuf>,
    /// The server to restore into: redis://[user:pass@]host:port, rediss:// for TLS.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Overwrite keys that exist in the target (RESTORE … REPLACE).
    #[arg(long)]
    pub replace: bool,
    /// FLUSHALL the target first.
    #[arg(long, conflicts_with = "replace")]
    pub flush: bool,
    /// When the target already holds keys, do nothing and exit 0.
    #[arg(long, conflicts_with_all = ["replace", "flush"])]
    pub if_target_empty: bool,
    /// Count keys the target refuses and go on, instead of stopping at the first.
    #[arg(long)]
    pub keep_going: bool,
    /// Only this database (repeatable).
    #[arg(long = "db", value_name = "N")]
    pub dbs: Vec<u64>,
    /// Commands per pipelined batch.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub batch: usize,
    /// Skip the target's DEBUG DIGEST afterwards (it blocks the target while it hashes the
    /// whole dataset); the key count is still compared.
    #[arg(long)]
    pub no_digest: bool,
    /// At most this many keys per second, to spare a live target (0: no limit).
    #[arg(long, value_name = "KEYS_PER_S", default_value_t = 0)]
    pub rate: u64,
    /// CA certificates to verify the target with (rediss://).
    #[arg(long, value_name = "PATH")]
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate (and its key) for targets that require one.
    #[arg(long, value_name = "PATH", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long, value_name = "PATH", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// The name the target's certificate must carry (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Do not verify the target's certificate.
    #[arg(long)]
    pub tls_insecure: bool,
    /// Print one JSON document summarising the restore.
    #[arg(long)]
    pub json: bool,
}

/// A file removed when dropped (the point-in-time file, once restored or failed).
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn run(a: RestoreArgs) -> Result<ExitCode> {
    let url = TargetUrl::parse(&a.to)?;
    let tls = TlsSettings {
        ca_file: a.tls_ca_file.clone(),
        cert_file: a.tls_cert_file.clone(),
        key_file: a.tls_key_file.clone(),
        server_name: a.tls_server_name.clone(),
        insecure_skip_verify: a.tls_insecure,
    };
    let mut conn = Conn::connect(&url, Some(&tls), Duration::from_secs(30))?;
    if a.if_target_empty {
        let keys = conn.keys()?;
        if keys > 0 {
            eprintln!(
                "{}: holds {keys} keys; nothing to do (--if-target-empty)",
                url.address
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    let opts = RestoreOptions {
        replace: a.replace,
        flush: a.flush,
        keep_going: a.keep_going,
        batch: a.batch,
        rate: a.rate,
        no_digest: a.no_digest,
        dbs: a.dbs.clone(),
        tls: None,
        timeout: Duration::from_secs(30),
    };
    let now = super::now_ms();
    let mut hasher = ObjectHasher::new();
    // A point in time is built into a temporary file first, then restored like --from.
    let built = match (&a.config, a.point.target()?) {
        (Some(config), Some(target)) => {
            let (_, storage) = super::list::open_storage(config)?;
            let file = TempPath(std::env::temp_dir().join(format!(
                "replisnap-restore-{}-{now}.rdb",
                std::process::id()
            )));
            let doc = super::point::build(
                storage.as_ref(),
                target,
                a.point.history.as_deref(),
                &file.0,
            )?;
            eprintln!("{}", doc.line(&file.0.display().to_string()));
            Some((file, doc))
        }
        (None, Some(_)) => anyhow::bail!("--at/--offset need --config (the archive's storage)"),
        _ => None,
    };
    let (input, len, name, manifest): (Box<dyn Read>, Option<u64>, String, _) = match &a.config {
        Some(_) if built.is_some() => {
            let (file, doc) = built.as_ref().expect("checked");
            let f = std::fs::File::open(&file.0)
                .with_context(|| format!("{}: cannot open", file.0.display()))?;
            let len = f.metadata().ok().map(|m| m.len());
            let name = format!("history {} offset {}", doc.history, doc.offset);
            (Box::new(f) as Box<dyn Read>, len, name, None)
        }
        Some(config) => {
            let (_, storage) = super::list::open_storage(config)?;
            let where_ = storage.describe();
            let m = resolve(storage.as_ref(), a.id.as_deref().unwrap_or("latest"))
                .with_context(|| where_.clone())?;
            let r = storage
                .open_rdb(&m.id)
                .with_context(|| format!("{where_}: snapshot {}", m.id))?;
            (r, Some(m.rdb.bytes), format!("snapshot {}", m.id), Some(m))
        }
        None => {
            let p = a.from.clone().unwrap_or_default();
            let name = p.display().to_string();
            let f = std::fs::File::open(&p).with_context(|| format!("{name}: cannot open"))?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(f), len, name, None)
        }
    };
    let reader = RdbReader::new(
        HashingReader {
            inner: input,
            hasher: &mut hasher,
        },
        len,
        Options::default(),
    )
    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let mut progress = Progress::bytes(len.unwrap_or(0));
    let summary = restore(reader, &mut conn, &opts, now, |pos, keys| {
        progress.set(pos);
        progress.note(format!("{keys} keys"));
    })
    .with_context(|| format!("restore of {name} into {}", url.address));
    progress.finish();
    let summary = summary?;
    let mut problems = Vec::new();
    if let Some(m) = &manifest {
        let stored = hasher.finish();
        if let Err(e) = m.check_describes(&m.id, &stored) {
            problems.push(format!("{e}: what was restored may be damaged"));
        }
    }
    let expected = summary.keys_restored;
    if (a.flush || !a.replace) && a.dbs.is_empty() && summary.target_keys != expected {
        problems.push(format!(
            "{} holds {} keys after the restore; {expected} were restored",
            url.address, summary.target_keys
        ));
    }
    if let (Some(d), Some(sent)) = (&summary.target_digest, &summary.digest_sent) {
        if (a.flush || !a.replace) && a.dbs.is_empty() && d != sent {
            problems.push(format!(
                "{} answers DEBUG DIGEST {d}; what was sent gives {sent}",
                url.address
            ));
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if problems.is_empty() {
        println!(
            "{name}: {} keys restored into {} ({}){}{}",
            summary.keys_restored,
            url.address,
            summary.target_version,
            if summary.keys_expired_skipped > 0 {
                format!(
                    ", {} already expired and skipped",
                    summary.keys_expired_skipped
                )
            } else {
                String::new()
            },
            if summary.target_digest.is_some() {
                ", digest checked"
            } else {
                ", key count checked (the target does not answer DEBUG DIGEST)"
            }
        );
    }
    for p in &problems {
        eprintln!("error: {name}: {p}");
    }
    Ok(if problems.is_empty() && summary.keys_failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
