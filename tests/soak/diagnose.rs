//! When a quiet point's digests differ: load the snapshot's RDB into a fresh server of
//! the master's version and name the keys that differ (`DEBUG DIGEST-VALUE`, type,
//! encoding, expiry time on both sides), so a report says what, not only that. Read-only on the
//! master; it never decides a violation.

use std::fmt::Write as _;
use std::path::Path;

use crate::support::{Reply, TestServer};

fn text(r: &Reply) -> String {
    match r {
        Reply::Array(Some(items)) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        other => other
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .or_else(|| other.as_int().map(|i| i.to_string()))
            .unwrap_or_else(|| format!("{other:?}")),
    }
}

/// The databases `INFO keyspace` lists.
fn dbs(s: &TestServer) -> Vec<String> {
    s.info("keyspace")
        .lines()
        .filter_map(|l| l.strip_prefix("db")?.split(':').next().map(str::to_string))
        .collect()
}

fn keys(s: &TestServer, db: &str) -> Vec<Vec<u8>> {
    let mut c = s.connect().expect("connect");
    c.cmd(&[b"SELECT", db.as_bytes()]).expect("SELECT");
    let r = c.cmd(&[b"KEYS", b"*"]).expect("KEYS");
    r.as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(|k| k.as_bytes().map(<[u8]>::to_vec))
        .collect()
}

/// (digest of the value and expiry time: what must agree; type and encoding: context).
fn describe(s: &TestServer, db: &str, key: &[u8]) -> (String, String) {
    let mut c = s.connect().expect("connect");
    c.cmd(&[b"SELECT", db.as_bytes()]).expect("SELECT");
    let mut run = |args: &[&[u8]]| {
        c.cmd(args)
            .map(|r| text(&r))
            .unwrap_or_else(|e| e.to_string())
    };
    let same = format!(
        "{} expiretime {}",
        run(&[b"DEBUG", b"DIGEST-VALUE", key]),
        run(&[b"PEXPIRETIME", key])
    );
    let kind = run(&[b"TYPE", key]);
    let mut context = format!("{kind} {}", run(&[b"OBJECT", b"ENCODING", key]));
    let content = match kind.as_str() {
        "zset" => run(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]),
        "hash" => run(&[b"HGETALL", key]),
        "set" => run(&[b"SMEMBERS", key]),
        "list" => run(&[b"LRANGE", key, b"0", b"-1"]),
        "string" => run(&[b"GET", key]),
        _ => String::new(),
    };
    let cut: String = content.chars().take(400).collect();
    context.push_str(&format!(" {cut:?}"));
    (same, context)
}

/// Up to `max` keys whose value differs between `master` and the RDB at `rdb`.
/// `standby` (a real replica of the master, in sync at a quiet point) is shown beside them:
/// where it agrees with the snapshot, the servers themselves differ from their replicas.
pub fn differing_keys(master: &TestServer, standby: &TestServer, rdb: &Path, max: usize) -> String {
    let loaded = match TestServer::start_with_rdb(master.bin(), rdb, &[]) {
        Ok(s) => s,
        Err(e) => return format!("the snapshot does not load: {e}"),
    };
    let mut out = format!(
        "loaded snapshot digest {} (master {}); ",
        loaded.digest(),
        master.digest()
    );
    let mut n = 0;
    let mut all_dbs = dbs(master);
    for d in dbs(&loaded) {
        if !all_dbs.contains(&d) {
            all_dbs.push(d);
        }
    }
    for db in all_dbs {
        let mut ks = keys(master, &db);
        for k in keys(&loaded, &db) {
            if !ks.contains(&k) {
                ks.push(k);
            }
        }
        for k in ks {
            let ((a, ac), (b, bc)) = (describe(master, &db, &k), describe(&loaded, &db, &k));
            if a != b {
                let (c, cc) = describe(standby, &db, &k);
                let _ = write!(
                    out,
                    "\n  db{db} {:?}: master [{a} {ac}] snapshot [{b} {bc}] standby [{c} {cc}]",
                    String::from_utf8_lossy(&k)
                );
                n += 1;
                if n >= max {
                    return out;
                }
            }
        }
    }
    out
}
