//! `replisnap restore (--config F ID|latest | --from FILE) --to redis[s]://[user:pass@]host:port`:
//! push every key of a snapshot into a live server (`crate::restore`), or into a cluster:
//! a target node with `cluster_enabled:1` has its primaries discovered and each key sent to
//! the primary of its slot; with `[source] cluster = true` the snapshot is a set and every
//! shard's RDB of it is sent.
//!
//! Owns the verb: where the RDBs come from (storage, each checked against its manifest as
//! it is read, a set's shards also against the set; or a file), the target's TLS and
//! credentials, the refusal of a non-empty target (`--if-target-empty` makes that a success
//! for container entrypoints), and the check after: each target's key count and, where it
//! answers `DEBUG DIGEST`, its digest against the digest of what was sent to it. Exit 1 on
//! any difference. It must never print anything but the JSON document on stdout with
//! `--json`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::progress::Progress;
use crate::rdb::{Options, RdbReader};
use crate::replication::tls::TlsSettings;
use crate::restore::{
    cluster, restore_routed, Conn, RestoreError, RestoreOptions, RestoreSummary, Router, TargetUrl,
};
use crate::storage::hash::HashingReader;
use crate::storage::{resolve, Manifest, ObjectHasher, Storage};

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
    /// The server to restore into: redis://[user:pass@]host:port, rediss:// for TLS. A
    /// cluster node stands for its cluster: each key goes to the primary of its slot.
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
    /// Restore by one full sync instead of commands: the target becomes a replica of this
    /// process for as long as it takes to load the snapshot (as it loads an RDB file, at its
    /// load speed), then a master again. The target must be empty (or --flush) and accept
    /// REPLICAOF (managed services such as ElastiCache do not), and it must be able to
    /// connect to this host. Its repl-diskless-load is set to on-empty-db meanwhile where
    /// CONFIG is allowed, and put back.
    #[arg(long, conflicts_with_all = ["replace", "keep_going", "rate"])]
    pub via_sync: bool,
    /// With --via-sync: the address (HOST or HOST:PORT) to listen on for the target's
    /// connection and to tell it (default: this host's address on the connection to the
    /// target, any free port).
    #[arg(long, value_name = "HOST[:PORT]", requires = "via_sync")]
    pub sync_address: Option<String>,
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

/// One RDB to send: a file, or a stored snapshot (checked against its manifest).
struct Source {
    name: String,
    file: Option<PathBuf>,
    stored: Option<(Box<dyn Storage>, Manifest)>,
}

impl Source {
    fn open(&self) -> Result<(Box<dyn Read>, Option<u64>)> {
        if let Some((st, m)) = &self.stored {
            let r = st
                .open_rdb(&m.id)
                .with_context(|| format!("{}: snapshot {}", st.describe(), m.id))?;
            return Ok((r, Some(m.rdb.bytes)));
        }
        let p = self.file.clone().unwrap_or_default();
        let f = std::fs::File::open(&p).with_context(|| format!("{}: cannot open", self.name))?;
        let len = f.metadata().ok().map(|m| m.len());
        Ok((Box::new(f), len))
    }

    fn len(&self) -> u64 {
        match (&self.stored, &self.file) {
            (Some((_, m)), _) => m.rdb.bytes,
            (None, Some(p)) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            _ => 0,
        }
    }
}

/// Every shard snapshot of a set, each manifest checked against the set before anything
/// is sent.
fn set_sources(
    cfg: &crate::config::Config,
    root: &dyn Storage,
    arg: &str,
) -> Result<(String, Vec<Source>)> {
    use crate::storage::set;
    let s = super::sets::resolve(root, arg)?;
    super::sets::refuse_incomplete(&s, "nothing restored")?;
    let storage_cfg = cfg
        .storage
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no [storage] section"))?;
    let mut out = Vec::new();
    for x in &s.shards {
        let Some(sid) = &x.snapshot else { continue };
        let st = crate::storage::open(&set::shard_storage(storage_cfg, &x.shard))
            .with_context(|| format!("set {} shard {}", s.id, x.shard))?;
        let where_ = st.describe();
        let m = st
            .get_manifest(sid)
            .with_context(|| format!("{where_}: snapshot {sid}"))?;
        if m.digest != x.digest || m.source.offset != x.offset {
            anyhow::bail!(
                "set {} shard {}: its snapshot's manifest (digest {}, offset {}) is not what the set recorded (digest {}, offset {}); nothing restored",
                s.id, x.shard, m.digest, m.source.offset, x.digest, x.offset
            );
        }
        out.push(Source {
            name: format!("set {} shard {}", s.id, x.shard),
            file: None,
            stored: Some((st, m)),
        });
    }
    Ok((format!("set {}", s.id), out))
}

/// One target's part of a `--json` document of a cluster restore.
#[derive(serde::Serialize)]
struct TargetPart<'a> {
    address: String,
    slots: Vec<(u16, u16)>,
    #[serde(flatten)]
    summary: &'a RestoreSummary,
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
    let timeout = Duration::from_secs(30);
    let mut conn = Conn::connect(&url, Some(&tls), timeout)?;
    let (mut conns, router, topology) = if cluster::is_cluster(&mut conn) {
        drop(conn);
        let c = cluster::connect(&url, Some(&tls), timeout)
            .with_context(|| format!("target {}", url.address))?;
        (c.conns, c.router, Some(c.topology))
    } else {
        (vec![conn], Router::One, None)
    };
    if a.if_target_empty {
        for c in &mut conns {
            let keys = c.keys()?;
            if keys > 0 {
                eprintln!(
                    "{}: holds {keys} keys; nothing to do (--if-target-empty)",
                    c.addr()
                );
                return Ok(ExitCode::SUCCESS);
            }
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
        timeout,
        via_sync: a.via_sync,
        sync_address: a.sync_address.clone(),
    };
    let now = super::now_ms();
    // A point in time is built into a temporary file first, then restored like --from.
    let mut built = None;
    let (name, sources) = match (&a.config, a.point.target()?) {
        (Some(config), Some(target)) => {
            let (cfg, storage) = super::list::open_storage(config)?;
            if cfg.source.cluster {
                anyhow::bail!("--at/--offset: not for a cluster's snapshot sets");
            }
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
            let name = format!("history {} offset {}", doc.history, doc.offset);
            let src = Source {
                name: name.clone(),
                file: Some(file.0.clone()),
                stored: None,
            };
            built = Some(file);
            (name, vec![src])
        }
        (None, Some(_)) => anyhow::bail!("--at/--offset need --config (the archive's storage)"),
        (Some(config), None) => {
            let (cfg, storage) = super::list::open_storage(config)?;
            let arg = a.id.as_deref().unwrap_or("latest");
            if cfg.source.cluster {
                set_sources(&cfg, storage.as_ref(), arg)?
            } else {
                let where_ = storage.describe();
                let m = resolve(storage.as_ref(), arg).with_context(|| where_.clone())?;
                let name = format!("snapshot {}", m.id);
                let src = Source {
                    name: name.clone(),
                    file: None,
                    stored: Some((storage, m)),
                };
                (name, vec![src])
            }
        }
        (None, None) => {
            let p = a.from.clone().unwrap_or_default();
            let name = p.display().to_string();
            let src = Source {
                name: name.clone(),
                file: Some(p),
                stored: None,
            };
            (name, vec![src])
        }
    };
    let mut problems = Vec::new();
    let mut progress = Progress::bytes(sources.iter().map(Source::len).sum());
    let mut base = 0u64;
    let summaries = restore_routed(&mut conns, &router, &opts, now, |f| {
        for src in &sources {
            let named = |e: String| RestoreError::Source(format!("{}: {e}", src.name));
            let (input, len) = src.open().map_err(|e| named(format!("{e:#}")))?;
            let mut hasher = ObjectHasher::new();
            let reader = RdbReader::new(
                HashingReader {
                    inner: input,
                    hasher: &mut hasher,
                },
                len,
                Options::default(),
            )
            .map_err(|e| named(e.to_string()))?;
            f.rdb(reader, &mut |pos, keys| {
                progress.set(base + pos);
                progress.note(format!("{keys} keys"));
            })
            .map_err(|e| match e {
                RestoreError::Source(s) => named(s),
                e => e,
            })?;
            base += len.unwrap_or(0);
            if let Some((_, m)) = &src.stored {
                let stored = hasher.finish();
                if let Err(e) = m.check_describes(&m.id, &stored) {
                    problems.push(format!(
                        "{}: {e}: what was restored may be damaged",
                        src.name
                    ));
                }
            }
        }
        Ok(())
    })
    .with_context(|| format!("restore of {name} into {}", url.address));
    progress.finish();
    drop(built);
    let summaries = summaries?;
    let exact = (a.flush || !a.replace) && a.dbs.is_empty();
    for (c, s) in conns.iter().zip(&summaries) {
        if exact && s.target_keys != s.keys_restored {
            problems.push(format!(
                "{} holds {} keys after the restore; {} were restored into it",
                c.addr(),
                s.target_keys,
                s.keys_restored
            ));
        }
        if let (Some(d), Some(sent)) = (&s.target_digest, &s.digest_sent) {
            if exact && d != sent {
                problems.push(format!(
                    "{} answers DEBUG DIGEST {d}; what was sent to it gives {sent}",
                    c.addr()
                ));
            }
        }
    }
    if let Some(t) = &topology {
        problems.extend(cluster::moved_since(&url, Some(&tls), timeout, t)?);
    }
    let failed: u64 = summaries.iter().map(|s| s.keys_failed).sum();
    match &topology {
        None => print_one(&a, &name, &url.address, &summaries[0], problems.is_empty())?,
        Some(t) => print_cluster(
            &a,
            &name,
            &url.address,
            t,
            &conns,
            &summaries,
            problems.is_empty(),
        )?,
    }
    for p in &problems {
        eprintln!("error: {name}: {p}");
    }
    Ok(if problems.is_empty() && failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn skipped(s: &RestoreSummary) -> String {
    if s.keys_expired_skipped > 0 {
        format!(", {} already expired and skipped", s.keys_expired_skipped)
    } else {
        String::new()
    }
}

fn print_one(
    a: &RestoreArgs,
    name: &str,
    addr: &str,
    s: &RestoreSummary,
    good: bool,
) -> Result<()> {
    if a.json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else if good {
        println!(
            "{name}: {} keys restored into {addr} ({}){}{}{}",
            s.keys_restored,
            s.target_version,
            match &s.via_sync {
                Some(how) => format!(" by a full sync ({how} load)"),
                None => String::new(),
            },
            skipped(s),
            if s.target_digest.is_some() {
                ", digest checked"
            } else {
                ", key count checked (the target does not answer DEBUG DIGEST)"
            }
        );
    }
    Ok(())
}

fn print_cluster(
    a: &RestoreArgs,
    name: &str,
    seed: &str,
    t: &crate::cluster::Topology,
    conns: &[Conn],
    summaries: &[RestoreSummary],
    good: bool,
) -> Result<()> {
    let keys: u64 = summaries.iter().map(|s| s.keys_restored).sum();
    let secs = summaries.first().map_or(0.0, |s| s.send_seconds);
    let rate = if secs > 0.0 { keys as f64 / secs } else { 0.0 };
    if a.json {
        let parts: Vec<TargetPart> = t
            .shards
            .iter()
            .zip(conns)
            .zip(summaries)
            .map(|((sh, c), s)| TargetPart {
                address: c.addr().to_string(),
                slots: sh.slots.clone(),
                summary: s,
            })
            .collect();
        let doc = serde_json::json!({
            "source": name,
            "cluster": seed,
            "keys_restored": keys,
            "send_seconds": secs,
            "keys_per_second": rate,
            "targets": parts,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    for ((sh, c), s) in t.shards.iter().zip(conns).zip(summaries) {
        println!(
            "  {} (slots {}): {} keys{}{}",
            c.addr(),
            sh.name(),
            s.keys_restored,
            skipped(s),
            if s.target_digest.is_some() {
                ", digest checked"
            } else {
                ", key count checked"
            }
        );
    }
    if good {
        println!(
            "{name}: {keys} keys restored into the cluster of {seed} ({} primaries, {}) in {secs:.2} s ({rate:.0} keys/s)",
            conns.len(),
            summaries.first().map_or("", |s| s.target_version.as_str()),
        );
    }
    Ok(())
}
