//! What the server itself says about every key: the reference the file is compared with.

use std::collections::{BTreeMap, BTreeSet};

use crate::client::{array, bytes, field, int, is_nil, pairs, text, Client, Cmd};
use crate::populate::Caps;
use crate::support::{info_kv, Reply};

pub enum Expire {
    None,
    /// From PEXPIRETIME.
    Exact(i64),
    /// From PTTL plus the clock when it was asked (Redis 6.2).
    Approx(i64),
}

pub enum Model {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    /// Member → score bits.
    ZSet(BTreeMap<Vec<u8>, u64>),
    /// Field → (value, field TTL from HPEXPIRETIME).
    Hash(BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>),
    Stream(Box<StreamTruth>),
    /// ARSCAN index/value pairs and ARINFO next-insert-index.
    Array {
        elems: Vec<(u64, Vec<u8>)>,
        next_insert: i64,
    },
}

/// The server's replies about one stream, kept raw and interpreted by the checks.
pub struct StreamTruth {
    pub xrange: Reply,
    pub info: Reply,
    pub full: Reply,
    pub groups: Reply,
    /// Per group name: XPENDING key group - + N and XINFO CONSUMERS key group.
    pub pending: BTreeMap<Vec<u8>, Reply>,
    pub consumers: BTreeMap<Vec<u8>, Reply>,
}

pub struct KeyTruth {
    pub type_name: String,
    pub encoding: String,
    /// DEBUG DIGEST-VALUE.
    pub digest: Vec<u8>,
    pub expire: Expire,
    pub value: Model,
}

impl KeyTruth {
    /// Whether some hash field carries a TTL.
    pub fn has_field_ttl(&self) -> bool {
        matches!(&self.value, Model::Hash(h) if h.values().any(|(_, t)| t.is_some()))
    }
}

pub struct Truth {
    pub keys: BTreeMap<(u64, Vec<u8>), KeyTruth>,
    /// db → (keys, expires) from INFO keyspace.
    pub keyspace: BTreeMap<u64, (u64, u64)>,
    /// Library source codes from FUNCTION LIST WITHCODE.
    pub functions: BTreeSet<Vec<u8>>,
    /// When the server was asked (Unix ms), for the approximate times.
    pub asked_ms: i64,
    pub digest: String,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn keyspace(c: &mut Client) -> BTreeMap<u64, (u64, u64)> {
    let info = text(&c.run(Cmd::new("INFO").arg("keyspace")), "INFO keyspace");
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some((db, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(db) = db.strip_prefix("db").and_then(|d| d.parse().ok()) else {
            continue;
        };
        let get = |k| info_kv(rest, k).and_then(|v| v.parse().ok()).unwrap_or(0);
        out.insert(db, (get("keys"), get("expires")));
    }
    out
}

pub fn fetch(c: &mut Client, caps: &Caps) -> Truth {
    let asked_ms = now_ms();
    let keyspace = keyspace(c);
    let mut keys = BTreeMap::new();
    for &db in keyspace.keys() {
        c.select(db);
        let names: Vec<Vec<u8>> = array(&c.run(Cmd::new("KEYS").arg("*")), "KEYS")
            .iter()
            .map(|k| bytes(k, "KEYS"))
            .collect();
        for (k, t) in fetch_db(c, caps, &names, asked_ms) {
            keys.insert((db, k), t);
        }
    }
    let mut functions = BTreeSet::new();
    if caps.functions {
        let r = c.run(Cmd::new("FUNCTION").arg("LIST").arg("WITHCODE"));
        for lib in array(&r, "FUNCTION LIST") {
            let code = field(lib, "library_code", "FUNCTION LIST").expect("library_code");
            functions.insert(bytes(code, "library_code"));
        }
    }
    c.select(0);
    let digest = text(&c.run(Cmd::new("DEBUG").arg("DIGEST")), "DEBUG DIGEST");
    Truth {
        keys,
        keyspace,
        functions,
        asked_ms,
        digest,
    }
}

fn fetch_db(
    c: &mut Client,
    caps: &Caps,
    names: &[Vec<u8>],
    asked_ms: i64,
) -> Vec<(Vec<u8>, KeyTruth)> {
    // Round 1: type, encoding, expiry.
    let mut cmds = Vec::new();
    for k in names {
        cmds.push(Cmd::new("TYPE").arg(k));
        cmds.push(Cmd::new("OBJECT").arg("ENCODING").arg(k));
        cmds.push(Cmd::new("DEBUG").arg("DIGEST-VALUE").arg(k));
        cmds.push(if caps.pexpiretime {
            Cmd::new("PEXPIRETIME").arg(k)
        } else {
            Cmd::new("PTTL").arg(k)
        });
    }
    let r1 = c.pipe(&cmds);
    // Round 2: the value.
    let mut cmds = Vec::new();
    let mut meta = Vec::new();
    for (k, r) in names.iter().zip(r1.chunks(4)) {
        let type_name = text(&r[0], "TYPE");
        let encoding = text(&r[1], "OBJECT ENCODING");
        let digest = bytes(&array(&r[2], "DIGEST-VALUE")[0], "DIGEST-VALUE");
        let e = int(&r[3], "expiry");
        let expire = match (e, caps.pexpiretime) {
            (-1, _) => Expire::None,
            (e, _) if e < 0 => panic!("{}: key {k:?} vanished ({e})", caps.name),
            (e, true) => Expire::Exact(e),
            (e, false) => Expire::Approx(asked_ms + e),
        };
        let v = match type_name.as_str() {
            "string" => vec![Cmd::new("GET").arg(k)],
            "list" => vec![Cmd::new("LRANGE").arg(k).arg("0").arg("-1")],
            "set" => vec![Cmd::new("SMEMBERS").arg(k)],
            "zset" => vec![Cmd::new("ZRANGE")
                .arg(k)
                .arg("0")
                .arg("-1")
                .arg("WITHSCORES")],
            "hash" => vec![Cmd::new("HGETALL").arg(k)],
            "stream" => vec![
                Cmd::new("XRANGE").arg(k).arg("-").arg("+"),
                Cmd::new("XINFO").arg("STREAM").arg(k),
                Cmd::new("XINFO")
                    .arg("STREAM")
                    .arg(k)
                    .arg("FULL")
                    .arg("COUNT")
                    .arg("0"),
                Cmd::new("XINFO").arg("GROUPS").arg(k),
            ],
            "array" => crate::redis810::truth_cmds(k),
            t => panic!("{}: key {k:?} has type {t}, not in the dataset", caps.name),
        };
        meta.push((
            k.clone(),
            type_name,
            encoding,
            digest,
            expire,
            cmds.len(),
            v.len(),
        ));
        cmds.extend(v);
    }
    let r2 = c.pipe(&cmds);
    // Round 3: hash field TTLs, stream groups' PEL and consumers.
    let mut out = Vec::new();
    let mut cmds = Vec::new();
    let mut third = Vec::new();
    for (k, type_name, encoding, digest, expire, at, len) in meta {
        let r = &r2[at..at + len];
        let value = match type_name.as_str() {
            "string" => Model::String(bytes(&r[0], "GET")),
            "list" => Model::List(
                array(&r[0], "LRANGE")
                    .iter()
                    .map(|e| bytes(e, "LRANGE"))
                    .collect(),
            ),
            "set" => Model::Set(
                array(&r[0], "SMEMBERS")
                    .iter()
                    .map(|e| bytes(e, "SMEMBERS"))
                    .collect(),
            ),
            "zset" => Model::ZSet(
                array(&r[0], "ZRANGE")
                    .chunks(2)
                    .map(|p| {
                        (
                            bytes(&p[0], "member"),
                            parse_score(&text(&p[1], "score")).to_bits(),
                        )
                    })
                    .collect(),
            ),
            "hash" => {
                let h: BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)> = array(&r[0], "HGETALL")
                    .chunks(2)
                    .map(|p| (bytes(&p[0], "field"), (bytes(&p[1], "value"), None)))
                    .collect();
                if caps.hash_ttl && !h.is_empty() {
                    third.push((k.clone(), cmds.len(), 1));
                    cmds.push(
                        Cmd::new("HPEXPIRETIME")
                            .arg(&k)
                            .arg("FIELDS")
                            .arg(h.len().to_string())
                            .args(h.keys()),
                    );
                }
                Model::Hash(h)
            }
            "array" => crate::redis810::model(r),
            _ => {
                let groups: Vec<Vec<u8>> = array(&r[3], "XINFO GROUPS")
                    .iter()
                    .map(|g| {
                        bytes(
                            field(g, "name", "XINFO GROUPS").expect("name"),
                            "group name",
                        )
                    })
                    .collect();
                third.push((k.clone(), cmds.len(), 2 * groups.len()));
                for g in &groups {
                    cmds.push(
                        Cmd::new("XPENDING")
                            .arg(&k)
                            .arg(g)
                            .arg("-")
                            .arg("+")
                            .arg("100000"),
                    );
                    cmds.push(Cmd::new("XINFO").arg("CONSUMERS").arg(&k).arg(g));
                }
                let mut it = r.iter().cloned();
                Model::Stream(Box::new(StreamTruth {
                    xrange: it.next().unwrap(),
                    info: it.next().unwrap(),
                    full: it.next().unwrap(),
                    groups: it.next().unwrap(),
                    pending: groups
                        .iter()
                        .map(|g| (g.clone(), Reply::Bulk(None)))
                        .collect(),
                    consumers: BTreeMap::new(),
                }))
            }
        };
        out.push((
            k,
            KeyTruth {
                type_name,
                encoding,
                digest,
                expire,
                value,
            },
        ));
    }
    let r3 = c.pipe(&cmds);
    for (k, at, len) in third {
        let t = &mut out.iter_mut().find(|(n, _)| *n == k).unwrap().1;
        let r = &r3[at..at + len];
        match &mut t.value {
            Model::Hash(h) => {
                for ((_, (_, ttl)), e) in h.iter_mut().zip(array(&r[0], "HPEXPIRETIME")) {
                    let e = int(e, "HPEXPIRETIME");
                    assert!(e >= -1, "{}: HPEXPIRETIME {k:?} answered {e}", caps.name);
                    *ttl = (e >= 0).then_some(e as u64);
                }
            }
            Model::Stream(s) => {
                let names: Vec<Vec<u8>> = s.pending.keys().cloned().collect();
                for (g, pc) in names.iter().zip(r.chunks(2)) {
                    s.pending.insert(g.clone(), pc[0].clone());
                    s.consumers.insert(g.clone(), pc[1].clone());
                }
            }
            _ => unreachable!(),
        }
    }
    out
}

/// A score as the server prints it (`inf`, `-inf`, `-0`, `5e-324`, …).
pub fn parse_score(s: &str) -> f64 {
    s.parse::<f64>()
        .unwrap_or_else(|e| panic!("score {s:?} does not parse: {e}"))
}

/// `ms-seq` as a pair.
pub fn parse_id(r: &Reply, what: &str) -> (u64, u64) {
    let t = text(r, what);
    let (a, b) = t
        .split_once('-')
        .unwrap_or_else(|| panic!("{what}: bad stream id {t:?}"));
    (a.parse().unwrap(), b.parse().unwrap())
}

/// A flat-map reply as a name → value map.
pub fn map<'a>(r: &'a Reply, what: &str) -> BTreeMap<String, &'a Reply> {
    pairs(r, what).into_iter().collect()
}

pub fn opt_int(r: Option<&&Reply>) -> Option<i64> {
    r.and_then(|v| if is_nil(v) { None } else { v.as_int() })
}
