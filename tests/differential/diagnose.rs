//! Finding what differs when the differential test fails: the first differing key with both
//! sides' values and the commands that named it, and the DIFF_STEP walk that checks every
//! command's keys as it goes.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use replisnap::digest::{mix, value::value_digest, Rules};
use replisnap::keyspace::Entry;
use replisnap::rdb::KeyEntry;
use replisnap::replication::ReplicaHandle;

use super::support::{encode_command, read_reply, wait_for, ServerBin, TestServer};
use super::{now_ms, offset, show, target};

/// Our `DEBUG DIGEST-VALUE` of one entry ("" when it digests to nothing).
fn value_hex(rules: &Rules, db: u64, e: &Entry) -> String {
    let value = e.decode().unwrap();
    let k = KeyEntry {
        db,
        key: e.key().to_vec(),
        expire_ms: e.expire_ms(),
        idle: None,
        freq: None,
        meta: vec![],
        rdb_type: e.rdb_type(),
        value,
        offset: 0,
    };
    value_digest(rules, &k, now_ms())
        .unwrap()
        .map(|a| mix::hex(&a))
        .unwrap_or_default()
}

/// The DIFF_STEP walk (see `check`).
pub fn step(
    m: &TestServer,
    h: &ReplicaHandle,
    bin: &ServerBin,
    cmds: &[Vec<Vec<u8>>],
    name: &str,
    seed: u64,
) {
    let rules = Rules {
        as_held: true,
        ..Rules::for_target(target(bin).parse().unwrap()).unwrap()
    };
    let mut s = TcpStream::connect(("127.0.0.1", m.port())).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut db = 0u64;
    let mut in_multi = false;
    for (i, c) in cmds.iter().enumerate() {
        let args: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
        s.write_all(&encode_command(&args)).unwrap();
        read_reply(&mut r).unwrap();
        match c[0].as_slice() {
            b"MULTI" => in_multi = true,
            b"EXEC" => in_multi = false,
            b"SELECT" => db = String::from_utf8_lossy(&c[1]).parse().unwrap(),
            _ => {}
        }
        if in_multi {
            continue;
        }
        wait_for("step caught up", Duration::from_secs(10), || {
            h.status.offset.load(Ordering::Relaxed) == offset(m)
        });
        let (snap, _, _, _) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
        let mut ours: BTreeMap<Vec<u8>, String> = BTreeMap::new();
        snap.walk(|d, e| {
            if d == db && c[1..].iter().any(|a| a == e.key()) {
                ours.insert(e.key().to_vec(), value_hex(&rules, db, e));
            }
        });
        let mut probe = TcpStream::connect(("127.0.0.1", m.port())).unwrap();
        let mut pr = BufReader::new(probe.try_clone().unwrap());
        let dbs = db.to_string();
        probe
            .write_all(&encode_command(&[b"SELECT", dbs.as_bytes()]))
            .unwrap();
        read_reply(&mut pr).unwrap();
        for k in &c[1..] {
            probe
                .write_all(&encode_command(&[b"DEBUG", b"DIGEST-VALUE", k]))
                .unwrap();
            let theirs = read_reply(&mut pr).unwrap();
            let theirs = theirs
                .as_array()
                .and_then(|a| a.first())
                .and_then(|r| r.as_string())
                .unwrap_or_default();
            let mine = ours.get(k).cloned().unwrap_or_default();
            let same = theirs == mine || (mine.is_empty() && theirs.chars().all(|ch| ch == '0'));
            if !same {
                let mut detail = String::new();
                snap_value(h, db, k, &mut detail);
                panic!(
                    "{name} seed {seed}: after command {i} in db {db}: {:?}\nkey {:?}: master {theirs} ours {mine}{detail}\nlast commands that named it:\n  {}",
                    c.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>().join(" "),
                    String::from_utf8_lossy(k),
                    touched(&cmds[..=i], k, 10)
                );
            }
        }
    }
}

/// Our decoded value of `key` in `db`, appended to `out`.
pub fn snap_value(h: &ReplicaHandle, db: u64, key: &[u8], out: &mut String) {
    let (snap, _, _, _) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
    snap.walk(|d, e| {
        if d == db && e.key() == key {
            let v = e.decode();
            out.push_str(&format!(
                "\nours (type {}, expires {:?}): {v:?}",
                e.rdb_type(),
                e.expire_ms()
            ));
        }
    });
}

/// The last `n` commands that named `key`, one per line.
pub fn touched(cmds: &[Vec<Vec<u8>>], key: &[u8], n: usize) -> String {
    let t: Vec<String> = cmds
        .iter()
        .filter(|c| c.iter().skip(1).any(|a| a == key))
        .map(|c| {
            c.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    t[t.len().saturating_sub(n)..].join("\n  ")
}

/// The first key whose value digest differs, with the commands that touched it.
pub fn diagnose(
    m: &TestServer,
    h: &ReplicaHandle,
    bin: &ServerBin,
    cmds: &[Vec<Vec<u8>>],
) -> String {
    let rules = Rules {
        as_held: true,
        ..Rules::for_target(target(bin).parse().unwrap()).unwrap()
    };
    let (snap, _, _, _) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
    let mut ours: BTreeMap<(u64, Vec<u8>), String> = BTreeMap::new();
    snap.walk(|db, e| {
        ours.insert((db, e.key().to_vec()), value_hex(&rules, db, e));
    });
    for db in [0u64, 1, 3] {
        m.must(&["SELECT", &db.to_string()]);
        let keys = m.must(&["KEYS", "*"]);
        let mut names: Vec<Vec<u8>> = keys
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_bytes().unwrap().to_vec())
            .collect();
        names.extend(
            ours.keys()
                .filter(|(d, _)| *d == db)
                .map(|(_, k)| k.clone()),
        );
        names.sort();
        names.dedup();
        for k in names {
            let theirs = m.cmd(&[b"DEBUG", b"DIGEST-VALUE", &k]).unwrap();
            let theirs = theirs
                .as_array()
                .and_then(|a| a.first())
                .and_then(|r| r.as_string())
                .unwrap_or_default();
            let mine = ours.get(&(db, k.clone())).cloned().unwrap_or_default();
            let absent = "0000000000000000000000000000000000000000";
            let same = theirs == mine || (mine.is_empty() && theirs == absent);
            if !same {
                // Sorted sets: both sides' members and scores, to see which one moved.
                let mut detail = String::new();
                if m.cmd(&[b"TYPE", &k]).unwrap().as_string().as_deref() == Some("zset") {
                    let r = m.cmd(&[b"ZRANGE", &k, b"0", b"-1", b"WITHSCORES"]).unwrap();
                    let theirs: Vec<String> = r.as_array().unwrap().iter().map(show).collect();
                    let enc = m.cmd(&[b"OBJECT", b"ENCODING", &k]).unwrap();
                    let ttl = m.cmd(&[b"PEXPIRETIME", &k]).unwrap();
                    if theirs.len() > 100 {
                        let (d, first) = zset_difference(h, db, &k, r.as_array().unwrap());
                        return format!(
                            "first differing key: db {db} {:?} (big, {}): master {} ours {mine}{d}\nthe commands that named the key and its first differing member:\n  {}",
                            String::from_utf8_lossy(&k),
                            show(&enc),
                            r.as_array().map_or(0, |a| a.len() / 2),
                            touched_both(cmds, &k, &first, 12)
                        );
                    }
                    detail = format!(
                        "\nmaster ({}, expires {}): {}",
                        show(&enc),
                        show(&ttl),
                        theirs.join(" ")
                    );
                    snap_value(h, db, &k, &mut detail);
                }
                return format!(
                    "first differing key: db {db} {:?}: master {theirs} ours {mine:?}{detail}\nlast commands that named it:\n  {}",
                    String::from_utf8_lossy(&k),
                    touched(cmds, &k, 15)
                );
            }
        }
    }
    let mut per_db: BTreeMap<u64, usize> = BTreeMap::new();
    for (db, _) in ours.keys() {
        *per_db.entry(*db).or_default() += 1;
    }
    format!(
        "no differing key found in dbs 0, 1, 3; ours per db {per_db:?}; master: {}",
        m.info("keyspace").replace("\r\n", " ")
    )
}

/// The last `n` commands naming both `key` and `member`.
fn touched_both(cmds: &[Vec<Vec<u8>>], key: &[u8], member: &[u8], n: usize) -> String {
    let last = cmds
        .iter()
        .rposition(|c| c.iter().skip(1).any(|a| a == key) && c.iter().skip(2).any(|a| a == member))
        .unwrap_or(0);
    let before: Vec<String> = cmds[..last]
        .iter()
        .filter(|c| c.iter().skip(1).any(|a| a == key))
        .map(|c| {
            format!(
                "{} {} ({} args)",
                String::from_utf8_lossy(&c[0]),
                String::from_utf8_lossy(&c[1]),
                c.len()
            )
        })
        .collect();
    let before = before[before.len().saturating_sub(25)..].join(" | ");
    if let Ok(path) = std::env::var("DIFF_DUMP_CMDS") {
        let mut out = Vec::new();
        for c in cmds[..=last]
            .iter()
            .filter(|c| c.iter().skip(1).any(|a| a == key))
        {
            out.extend(super::support::encode_command(
                &c.iter().map(Vec::as_slice).collect::<Vec<_>>(),
            ));
        }
        let _ = std::fs::write(path, out);
    }
    let t: Vec<String> = cmds
        .iter()
        .filter(|c| c.iter().skip(1).any(|a| a == key))
        .filter(|c| member.is_empty() || c.iter().skip(2).any(|a| a == member))
        .map(|c| {
            let s: Vec<String> = c
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let line = s.join(" ");
            if line.len() > 3000 {
                format!("{}… ({} args)", &line[..3000.min(line.len())], c.len())
            } else {
                line
            }
        })
        .collect();
    format!(
        "{}\n  before it: {before}",
        t[t.len().saturating_sub(n)..].join("\n  ")
    )
}

/// The (member, score) pairs only one side has, for a sorted set too big to print whole,
/// and the first differing member.
fn zset_difference(
    h: &ReplicaHandle,
    db: u64,
    key: &[u8],
    master: &[super::support::Reply],
) -> (String, Vec<u8>) {
    let mut theirs = std::collections::BTreeSet::new();
    for p in master.chunks(2) {
        let sc = p[1].as_string().unwrap_or_default();
        let f: f64 = match sc.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            x => x.parse().unwrap_or(f64::NAN),
        };
        theirs.insert((p[0].as_bytes().unwrap_or_default().to_vec(), f.to_bits()));
    }
    let mut ours = std::collections::BTreeSet::new();
    let (snap, _, _, _) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
    snap.walk(|d, e| {
        if d == db && e.key() == key {
            if let Ok(replisnap::rdb::Value::SortedSet(p)) = e.decode() {
                ours.extend(p.into_iter().map(|(m, s)| (m, s.to_bits())));
            }
        }
    });
    let fmt = |x: &(Vec<u8>, u64)| {
        format!(
            "{:?} {}",
            String::from_utf8_lossy(&x.0),
            f64::from_bits(x.1)
        )
    };
    let only = |a: &std::collections::BTreeSet<(Vec<u8>, u64)>,
                b: &std::collections::BTreeSet<(Vec<u8>, u64)>| {
        a.difference(b)
            .take(20)
            .map(fmt)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let first = theirs
        .symmetric_difference(&ours)
        .next()
        .map(|x| x.0.clone())
        .unwrap_or_default();
    let text = format!(
        "\n  master {} members, ours {}\n  master only: {}\n  ours only: {}",
        theirs.len(),
        ours.len(),
        only(&theirs, &ours),
        only(&ours, &theirs)
    );
    (text, first)
}
