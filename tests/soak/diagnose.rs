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

fn describe(s: &TestServer, db: &str, key: &[u8]) -> String {
    let mut c = s.connect().expect("connect");
    c.cmd(&[b"SELECT", db.as_bytes()]).expect("SELECT");
    let mut out = String::new();
    for args in [
        &[b"DEBUG".as_slice(), b"DIGEST-VALUE", key][..],
        &[b"TYPE", key],
        &[b"OBJECT", b"ENCODING", key],
        &[b"PEXPIRETIME", key],
    ] {
        let r = c.cmd(args).map(|r| text(&r)).unwrap_or_else(|e| e.to_string());
        let _ = write!(out, "{r} ");
    }
    out
}

/// Up to `max` keys whose value differs between `master` and the RDB at `rdb`.
pub fn differing_keys(master: &TestServer, rdb: &Path, max: usize) -> String {
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
            let (a, b) = (describe(master, &db, &k), describe(&loaded, &db, &k));
            if a != b {
                let _ = write!(
                    out,
                    "\n  db{db} {:?}: master [{a}] snapshot [{b}]",
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
