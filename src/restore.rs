//! Putting a snapshot into a live server: every key of an RDB stream sent as a pipelined
//! `RESTORE key ttl payload ABSTTL [REPLACE] [IDLETIME s | FREQ f]`, with the payload in the
//! DUMP format of the target's own version (its encodings, its RDB version, CRC-64), each
//! database selected in turn and function libraries loaded first.
//!
//! Owns the restore protocol and its safety rules: a target that holds keys is refused
//! unless the caller asked to replace or flush; keys already expired are not sent; an error
//! reply names the key and stops the restore (or is counted, with `keep_going`). It computes
//! the `DEBUG DIGEST` of exactly what it sent (for the target's version, at the start) so
//! the caller can compare the server's answer. It must never send a write before the
//! emptiness check, and never buffer more than one batch of commands.

use std::io::Read;
use std::time::Duration;

use crate::digest::{DatasetDigest, Rules};
use crate::rdb::writer::{encode_value, KeyRecord, Target, WriteOptions};
use crate::rdb::Item;
use crate::rdb::RdbReader;
use crate::replication::link::Link;
use crate::replication::tls::TlsSettings;
use crate::resp::Frame;
use crate::server_version::ServerVersion;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Url(String),
    #[error("{addr}: {what}")]
    Target { addr: String, what: String },
    #[error("{addr} holds {keys} keys; restore into an empty server, or pass --replace (overwrite keys of the same name) or --flush (FLUSHALL first)")]
    NotEmpty { addr: String, keys: u64 },
    #[error("key {key} (db {db}): {what}")]
    Key { db: u64, key: String, what: String },
    #[error("source: {0}")]
    Source(String),
}

/// Where to restore to, from `redis[s]://[user:pass@]host:port[/db]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetUrl {
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// host:port, as `connect` takes it.
    pub address: String,
}

fn percent_decode(s: &str) -> Result<String, RestoreError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| RestoreError::Url(format!("bad %-escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| RestoreError::Url("credentials are not UTF-8".into()))
}

impl TargetUrl {
    pub fn parse(url: &str) -> Result<TargetUrl, RestoreError> {
        let bad = |why: &str| {
            RestoreError::Url(format!(
                "--to: {why} (want redis[s]://[user:pass@]host:port)"
            ))
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("rediss://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("redis://") {
            (false, r)
        } else {
            return Err(bad("not a redis:// or rediss:// URL"));
        };
        let rest = rest.split('/').next().unwrap_or_default();
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (
                    Some(percent_decode(user)?).filter(|s| !s.is_empty()),
                    Some(percent_decode(pass)?),
                ),
                None => (None, Some(percent_decode(u)?)),
            },
        };
        let port_ok = hostport
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            return Err(bad("no host:port"));
        }
        Ok(TargetUrl {
            tls,
            username,
            password,
            address: hostport.to_string(),
        })
    }
}

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Overwrite keys of the same name (RESTORE … REPLACE); the target may hold keys.
    pub replace: bool,
    /// FLUSHALL the target first.
    pub flush: bool,
    /// Count a refused key and go on instead of stopping.
    pub keep_going: bool,
    /// Commands per pipelined batch.
    pub batch: usize,
    /// Only these databases (empty: all).
    pub dbs: Vec<u64>,
    pub tls: Option<TlsSettings>,
    pub timeout: Duration,
}

/// What a restore did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreSummary {
    pub target_version: String,
    pub keys_restored: u64,
    pub keys_expired_skipped: u64,
    pub keys_failed: u64,
    pub functions: u64,
    pub bytes_sent: u64,
    /// The digest of what was sent, for the target's version.
    pub digest_sent: String,
    /// Keys in the target afterwards (all databases).
    pub target_keys: u64,
    /// The target's DEBUG DIGEST afterwards, where it answers it.
    pub target_digest: Option<String>,
}

/// A connection to the target, with the pipelined batch being built.
pub struct Conn {
    link: Link,
    addr: String,
    pending: Vec<Option<(u64, Vec<u8>)>>,
    out: Vec<u8>,
}

impl Conn {
    pub fn connect(
        url: &TargetUrl,
        tls: Option<&TlsSettings>,
        timeout: Duration,
    ) -> Result<Conn, RestoreError> {
        let addr = url.address.clone();
        let fail = |what: String| RestoreError::Target {
            addr: addr.clone(),
            what,
        };
        let default_tls = TlsSettings::default();
        let tls = if url.tls {
            Some(tls.unwrap_or(&default_tls))
        } else {
            None
        };
        let link = Link::connect(&addr, timeout, tls).map_err(|e| fail(e.to_string()))?;
        let mut c = Conn {
            link,
            addr: addr.clone(),
            pending: Vec::new(),
            out: Vec::new(),
        };
        if let Some(p) = &url.password {
            let r = match &url.username {
                Some(u) => c.call(&[b"AUTH", u.as_bytes(), p.as_bytes()]),
                None => c.call(&[b"AUTH", p.as_bytes()]),
            };
            r.map_err(|e| fail(format!("AUTH: {e}")))?;
        }
        Ok(c)
    }

    /// How long to wait for a reply (a big dataset's DEBUG DIGEST takes a while).
    pub fn set_read_timeout(&self, t: Duration) {
        let _ = self.link.set_read_timeout(t);
    }

    fn fail(&self, what: String) -> RestoreError {
        RestoreError::Target {
            addr: self.addr.clone(),
            what,
        }
    }

    /// One command, answered before returning; an error reply is `Err`.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Frame, String> {
        self.link.send(args).map_err(|e| e.to_string())?;
        match self.link.read_frame().map_err(|e| e.to_string())? {
            Frame::Error(e) => Err(String::from_utf8_lossy(&e).into_owned()),
            f => Ok(f),
        }
    }

    pub fn text(&mut self, args: &[&[u8]]) -> Result<String, RestoreError> {
        match self.call(args) {
            Ok(Frame::Simple(b) | Frame::Bulk(Some(b))) => {
                Ok(String::from_utf8_lossy(&b).into_owned())
            }
            Ok(Frame::Integer(i)) => Ok(i.to_string()),
            Ok(_) => Ok(String::new()),
            Err(e) => Err(self.fail(format!("{}: {e}", String::from_utf8_lossy(args[0])))),
        }
    }

    /// Queue a command; `key` names it in an error (db, key).
    fn queue(&mut self, args: &[&[u8]], key: Option<(u64, Vec<u8>)>) {
        crate::resp::encode_command(args, &mut self.out);
        self.pending.push(key);
    }

    /// Send the batch and read its replies; refused keys are returned (db, key, error).
    fn flush(&mut self) -> Result<Vec<(u64, Vec<u8>, String)>, RestoreError> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let out = std::mem::take(&mut self.out);
        self.link
            .write_all(&out)
            .map_err(|e| self.fail(format!("write: {e}")))?;
        let mut refused = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            let f = self
                .link
                .read_frame()
                .map_err(|e| self.fail(format!("reply: {e}")))?;
            if let Frame::Error(e) = f {
                let e = String::from_utf8_lossy(&e).into_owned();
                match p {
                    Some((db, key)) => refused.push((db, key, e)),
                    None => return Err(self.fail(e)),
                }
            }
        }
        Ok(refused)
    }

    /// Keys in every database, from `INFO keyspace`.
    pub fn keys(&mut self) -> Result<u64, RestoreError> {
        let info = self.text(&[b"INFO", b"keyspace"])?;
        Ok(info
            .lines()
            .filter_map(|l| {
                l.split_once("keys=")?
                    .1
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum())
    }

    /// The target's version, from `INFO server`.
    pub fn version(&mut self) -> Result<ServerVersion, RestoreError> {
        let info = self.text(&[b"INFO", b"server"])?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let v = match field("valkey_version:") {
            Some(v) => format!("valkey-{v}"),
            None => format!("redis-{}", field("redis_version:").unwrap_or_default()),
        };
        v.parse()
            .map_err(|e| self.fail(format!("version {v}: {e}")))
    }
}

/// A DUMP payload: type byte and value, the RDB version (LE u16), CRC-64 of all that.
pub fn dump_payload(ty: u8, value: &[u8], rdb_version: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(value.len() + 11);
    p.push(ty);
    p.extend_from_slice(value);
    p.extend_from_slice(&(rdb_version as u16).to_le_bytes());
    let crc = crate::rdb::crc::crc64(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

/// Restore every key `reader` yields into the server behind `conn`; `progress` gets the
/// reader's offset and the keys sent so far.
pub fn restore<R: Read>(
    mut reader: RdbReader<R>,
    conn: &mut Conn,
    opts: &RestoreOptions,
    now_ms: i64,
    mut progress: impl FnMut(u64, u64),
) -> Result<RestoreSummary, RestoreError> {
    let version = conn.version()?;
    let target = Target::for_server(version).map_err(|e| conn.fail(e))?;
    let rules = Rules::for_target(version).map_err(|e| conn.fail(e.to_string()))?;
    let mut digest = DatasetDigest::new(rules, now_ms);
    let before = conn.keys()?;
    if opts.flush {
        conn.text(&[b"FLUSHALL"])?;
    } else if before > 0 && !opts.replace {
        return Err(RestoreError::NotEmpty {
            addr: conn.addr.clone(),
            keys: before,
        });
    }
    let batch = opts.batch.max(1);
    let mut s = RestoreSummary {
        target_version: version.to_string(),
        ..RestoreSummary::default()
    };
    let mut db_selected: Option<u64> = None;
    let wopts = WriteOptions::default();
    let check = |refused: Vec<(u64, Vec<u8>, String)>, s: &mut RestoreSummary| {
        for (db, key, what) in refused {
            s.keys_failed += 1;
            s.keys_restored -= 1;
            if !opts.keep_going {
                return Err(RestoreError::Key {
                    db,
                    key: crate::rdb::error::escape_key(&key),
                    what,
                });
            }
            eprintln!(
                "warning: key {} (db {db}): {what}",
                crate::rdb::error::escape_key(&key)
            );
        }
        Ok(())
    };
    loop {
        let item = reader
            .next_item()
            .map_err(|e| RestoreError::Source(e.to_string()))?;
        let Some(item) = item else { break };
        match item {
            Item::Function { code } => {
                let mut args: Vec<&[u8]> = vec![b"FUNCTION", b"LOAD"];
                if opts.replace || opts.flush {
                    args.push(b"REPLACE");
                }
                args.push(&code);
                conn.queue(&args, None);
                s.functions += 1;
            }
            Item::Key(k) => {
                if !opts.dbs.is_empty() && !opts.dbs.contains(&k.db) {
                    continue;
                }
                if !k.loadable(now_ms) {
                    s.keys_expired_skipped += 1;
                    continue;
                }
                digest
                    .add(&k)
                    .map_err(|e| RestoreError::Source(e.to_string()))?;
                let rec = KeyRecord::from(&*k);
                let (ty, value) =
                    encode_value(&rec, &target, wopts).map_err(|e| RestoreError::Key {
                        db: k.db,
                        key: crate::rdb::error::escape_key(&k.key),
                        what: e.to_string(),
                    })?;
                let payload = dump_payload(ty, &value, target.rdb_version);
                if db_selected != Some(k.db) {
                    let db = k.db.to_string();
                    conn.queue(&[b"SELECT", db.as_bytes()], None);
                    db_selected = Some(k.db);
                }
                let ttl = k.expire_ms.unwrap_or(0).to_string();
                let mut args: Vec<&[u8]> = vec![b"RESTORE", &k.key, ttl.as_bytes(), &payload];
                if k.expire_ms.is_some() {
                    args.push(b"ABSTTL");
                }
                if opts.replace || opts.flush {
                    args.push(b"REPLACE");
                }
                let idle = k.idle.map(|i| i.to_string());
                let freq = k.freq.map(|f| f.to_string());
                if let Some(i) = &idle {
                    args.extend([&b"IDLETIME"[..], i.as_bytes()]);
                } else if let Some(f) = &freq {
                    args.extend([&b"FREQ"[..], f.as_bytes()]);
                }
                s.bytes_sent += payload.len() as u64;
                s.keys_restored += 1;
                let named = Some((k.db, k.key.clone()));
                conn.queue(&args, named);
            }
            _ => {}
        }
        if conn.pending.len() >= batch || conn.out.len() >= 8 << 20 {
            let refused = conn.flush()?;
            check(refused, &mut s)?;
            progress(reader.offset(), s.keys_restored);
        }
    }
    let refused = conn.flush()?;
    check(refused, &mut s)?;
    progress(reader.offset(), s.keys_restored);
    s.digest_sent = digest.finish().iter().map(|b| format!("{b:02x}")).collect();
    s.target_keys = conn.keys()?;
    // A big dataset's digest takes the server a while.
    conn.set_read_timeout(Duration::from_secs(600));
    s.target_digest = conn.text(&[b"DEBUG", b"DIGEST"]).ok();
    Ok(s)
}
