//! Read a generated file with our reader and compare everything with the server's answers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::Path;

use replisnap::rdb::{Checksum, Dialect, Item, KeyEntry, Options, RdbReader, Value};

use crate::populate::Caps;
use crate::truth::{Expire, KeyTruth, Model, Truth};

/// How one file was written.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub name: &'static str,
    pub compression: bool,
    pub checksum: bool,
    pub policy: &'static str,
}

/// Everything our reader produced from one file.
pub struct FileRead {
    pub dialect: Dialect,
    pub magic: &'static str,
    pub version: u32,
    pub aux: BTreeMap<Vec<u8>, Vec<u8>>,
    pub keys: Vec<KeyEntry>,
    pub functions: Vec<Vec<u8>>,
    pub selectdb: usize,
    pub resizedb: usize,
    pub templates: usize,
    pub checksum: Checksum,
    pub trailing: u64,
}

pub fn read_file(path: &Path) -> Result<FileRead, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut r = RdbReader::new(std::io::BufReader::new(f), Some(len), Options::default())
        .map_err(|e| format!("header: {e}"))?;
    let h = r.header();
    let mut out = FileRead {
        dialect: h.dialect,
        magic: h.magic(),
        version: h.version,
        aux: BTreeMap::new(),
        keys: Vec::new(),
        functions: Vec::new(),
        selectdb: 0,
        resizedb: 0,
        templates: 0,
        checksum: Checksum {
            stored: None,
            computed: 0,
        },
        trailing: 0,
    };
    let mut ended = false;
    loop {
        let item = r.next_item().map_err(|e| {
            let last = out
                .keys
                .last()
                .map(|k| String::from_utf8_lossy(&k.key).into_owned());
            format!("read error after key {last:?}: {e}")
        })?;
        match item {
            None => break,
            Some(Item::Aux { key, value }) => {
                out.aux.insert(key, value);
            }
            Some(Item::Key(k)) => out.keys.push(*k),
            Some(Item::Function { code, .. }) => out.functions.push(code),
            Some(Item::SelectDb(_)) => out.selectdb += 1,
            Some(Item::ResizeDb { .. }) => out.resizedb += 1,
            Some(Item::HashTemplate { .. }) => out.templates += 1,
            Some(Item::End { checksum, trailing }) => {
                out.checksum = checksum;
                out.trailing = trailing;
                ended = true;
            }
            Some(_) => {}
        }
    }
    if !ended {
        return Err("no End item".into());
    }
    Ok(out)
}

/// RDB version each server writes (docs/rdb-format.md §2.1).
pub fn expected_version(name: &str) -> Option<(&'static str, u32)> {
    Some(match name {
        "redis-6.2" => ("REDIS", 9),
        "redis-7.0" => ("REDIS", 10),
        "redis-7.2" => ("REDIS", 11),
        "redis-7.4" | "redis-8.2" => ("REDIS", 12),
        "redis-8.6" => ("REDIS", 13),
        "redis-8.10" => ("REDIS", 15),
        "valkey-8.0" | "valkey-8.1" => ("REDIS", 11),
        "valkey-9.0" | "valkey-9.1" => ("VALKEY", 80),
        _ => return None,
    })
}

/// Every type byte the dataset must produce on this server (docs/rdb-format.md §7.1).
pub fn expected_types(name: &str) -> Option<BTreeSet<u8>> {
    let v: &[u8] = match name {
        "redis-6.2" => &[0, 14, 11, 2, 12, 5, 13, 4, 15],
        "redis-7.0" => &[0, 18, 11, 2, 17, 5, 16, 4, 19],
        "redis-8.2" => &[0, 18, 11, 20, 2, 17, 5, 16, 25, 4, 24, 21],
        "redis-8.6" => &[0, 18, 11, 20, 2, 17, 5, 16, 25, 4, 24, 26],
        "valkey-8.1" => &[0, 18, 11, 20, 2, 17, 5, 16, 4, 21],
        "valkey-9.1" => &[0, 18, 11, 20, 2, 17, 5, 16, 4, 22, 21],
        // Extras (installed optionally).
        "redis-7.2" | "valkey-8.0" => &[0, 18, 11, 20, 2, 17, 5, 16, 4, 21],
        "redis-7.4" => &[0, 18, 11, 20, 2, 17, 5, 16, 25, 4, 24, 21],
        "redis-8.10" => &[0, 18, 11, 20, 2, 17, 5, 16, 25, 4, 24, 27, 28, 30, 32],
        "valkey-9.0" => &[0, 18, 11, 20, 2, 17, 5, 16, 4, 22, 21],
        _ => return None,
    };
    Some(v.iter().copied().collect())
}

fn stream_type(caps: &Caps) -> u8 {
    if caps.valkey {
        21
    } else if caps.ver < (7, 0) {
        15
    } else if caps.ver < (7, 2) {
        19
    } else if caps.ver < (8, 6) {
        21
    } else if caps.ver < (8, 8) {
        26
    } else {
        27
    }
}

/// The type byte the server must write for a key of this type and in-memory encoding.
pub fn expected_rdb_type(caps: &Caps, t: &KeyTruth) -> Option<u8> {
    let lp = caps.listpacks();
    Some(match (t.type_name.as_str(), t.encoding.as_str()) {
        ("string", _) => 0,
        ("list", _) => {
            if lp {
                18
            } else {
                14
            }
        }
        ("set", "intset") => 11,
        ("set", "listpack") => 20,
        ("set", "hashtable") => 2,
        ("zset", "ziplist") => 12,
        ("zset", "listpack") => 17,
        ("zset", "skiplist") => 5,
        ("hash", "ziplist") => 13,
        ("hash", "listpack") => 16,
        ("hash", "listpackex") => 25,
        ("hash", "template-listpack") => 30,
        ("hash", "template-array") => 32,
        ("array", _) => 28,
        ("hash", "hashtable") if t.has_field_ttl() => {
            if caps.valkey {
                22
            } else {
                24
            }
        }
        ("hash", "hashtable") => 4,
        ("stream", _) => stream_type(caps),
        _ => return None,
    })
}

/// Describe the first difference between two sequences (or `None` when equal).
pub fn first_diff<T: PartialEq + Debug>(ours: &[T], server: &[T]) -> Option<String> {
    if ours == server {
        return None;
    }
    let i = ours
        .iter()
        .zip(server)
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(server.len()));
    let show = |v: Option<&T>| {
        let s = format!("{v:?}");
        if s.len() > 300 {
            let head: String = s.chars().take(300).collect();
            format!("{head}… ({} chars)", s.len())
        } else {
            s
        }
    };
    Some(format!(
        "lengths ours {} / server {}; first difference at index {i}: ours {} vs server {}",
        ours.len(),
        server.len(),
        show(ours.get(i)),
        show(server.get(i))
    ))
}

fn short(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.chars().count() > 60 {
        let head: String = s.chars().take(60).collect();
        format!("{head:?}…({} bytes)", b.len())
    } else {
        format!("{s:?}")
    }
}

/// A score compared bit for bit (so -0 and 0 differ), shown as a float.
#[derive(PartialEq)]
struct Score(u64);

impl Debug for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} ({:#018x})", f64::from_bits(self.0), self.0)
    }
}

/// Compare one decoded key with the server's view; messages go to `errs`.
fn check_key(k: &KeyEntry, t: &KeyTruth, caps: &Caps, truth: &Truth, errs: &mut Vec<String>) {
    let ctx = format!(
        "db {} key {} (rdb_type {}, server encoding {})",
        k.db,
        short(&k.key),
        k.rdb_type,
        t.encoding
    );
    if k.value.type_name() != t.type_name {
        errs.push(format!(
            "{ctx}: TYPE ours {} vs server {}",
            k.value.type_name(),
            t.type_name
        ));
        return;
    }
    match expected_rdb_type(caps, t) {
        Some(want) if want != k.rdb_type => errs.push(format!(
            "{ctx}: rdb_type {} but the server's encoding implies {want}",
            k.rdb_type
        )),
        None => errs.push(format!("{ctx}: no expected rdb_type for this encoding")),
        _ => {}
    }
    match (&t.expire, k.expire_ms) {
        (Expire::None, None) => {}
        (Expire::Exact(e), Some(o)) if *e == o => {}
        (Expire::Approx(e), Some(o)) if (e - o).abs() <= 10_000 => {}
        (Expire::Exact(e) | Expire::Approx(e), o) => {
            errs.push(format!("{ctx}: expiry ours {o:?} vs server {e}"))
        }
        (Expire::None, Some(o)) => errs.push(format!("{ctx}: expiry ours {o} vs server none")),
    }
    if !k.loadable(crate::truth::now_ms()) {
        errs.push(format!(
            "{ctx}: loadable() is false for a key the server holds"
        ));
    }
    let diff = match (&k.value, &t.value) {
        (Value::String(o), Model::String(s)) => {
            (o != s).then(|| format!("value ours {} vs server {}", short(o), short(s)))
        }
        (Value::List(o), Model::List(s)) => first_diff(o, s),
        (Value::Set(o), Model::Set(s)) => {
            let mut ov = o.clone();
            ov.sort();
            let sv: Vec<Vec<u8>> = s.iter().cloned().collect();
            let dup = (ov.windows(2).any(|w| w[0] == w[1])).then(|| "duplicate members".into());
            dup.or_else(|| first_diff(&ov, &sv))
        }
        (Value::SortedSet(o), Model::ZSet(s)) => {
            let om: BTreeMap<Vec<u8>, u64> =
                o.iter().map(|(m, sc)| (m.clone(), sc.to_bits())).collect();
            let show = |m: &BTreeMap<Vec<u8>, u64>| -> Vec<(String, Score)> {
                m.iter().map(|(k, b)| (short(k), Score(*b))).collect()
            };
            if om.len() != o.len() {
                Some("duplicate members".into())
            } else {
                first_diff(&show(&om), &show(s))
            }
        }
        (Value::Hash(o), Model::Hash(s)) => {
            let om: BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)> = o
                .iter()
                .map(|f| (f.field.clone(), (f.value.clone(), f.expire_ms)))
                .collect();
            let ov: Vec<_> = om.into_iter().collect();
            let mut sv: Vec<_> = s.clone().into_iter().collect();
            if !caps.hash_ttl {
                // The server cannot say: the file must carry no TTLs then.
                for (_, (_, t)) in sv.iter_mut() {
                    *t = None;
                }
            }
            if ov.len() != o.len() {
                Some("duplicate fields".into())
            } else {
                first_diff(&ov, &sv)
            }
        }
        (Value::Stream(o), Model::Stream(s)) => {
            let mut e = Vec::new();
            crate::streams::check_stream(o, s, k.rdb_type, truth.asked_ms, &mut e);
            (!e.is_empty()).then(|| e.join("; "))
        }
        (Value::Array(o), Model::Array { elems, next_insert }) => {
            crate::redis810::compare(o, elems, *next_insert)
        }
        (o, _) => Some(format!("unexpected value {o:?}")),
    };
    if let Some(d) = diff {
        errs.push(format!("{ctx}: value differs: {d}"));
    }
}

/// Check one file against the server's answers. Returns the problems found.
pub fn check_file(
    path: &Path,
    caps: &Caps,
    truth: &Truth,
    variant: &Variant,
    version_info: &BTreeMap<String, String>,
) -> (Vec<String>, String) {
    let mut errs = Vec::new();
    let f = match read_file(path) {
        Ok(f) => f,
        Err(e) => return (vec![format!("our reader failed: {e}")], String::new()),
    };
    if let Some((magic, ver)) = expected_version(&caps.name) {
        if (f.magic, f.version) != (magic, ver) {
            errs.push(format!(
                "header {}{} but {} writes {magic}{ver}",
                f.magic, f.version, caps.name
            ));
        }
    }
    if (f.dialect == Dialect::Valkey) != (f.magic == "VALKEY") {
        errs.push(format!("dialect {:?} for magic {}", f.dialect, f.magic));
    }
    // Aux fields: the version the server reports about itself.
    for (aux, info) in [
        ("redis-ver", "redis_version"),
        ("valkey-ver", "valkey_version"),
    ] {
        if let Some(v) = version_info.get(info) {
            if let Some(a) = f.aux.get(aux.as_bytes()) {
                if a != v.as_bytes() {
                    errs.push(format!("aux {aux} = {} but INFO {info} = {v}", short(a)));
                }
            }
        }
    }
    if !f.aux.contains_key(&b"redis-bits"[..]) {
        errs.push("aux redis-bits missing".into());
    }

    // Keys: the same set, each matching.
    let mut seen = BTreeSet::new();
    let mut types = BTreeSet::new();
    let mut per_db: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for k in &f.keys {
        types.insert(k.rdb_type);
        let e = per_db.entry(k.db).or_default();
        e.0 += 1;
        e.1 += u64::from(k.expire_ms.is_some());
        if !seen.insert((k.db, k.key.clone())) {
            errs.push(format!("db {} key {}: appears twice", k.db, short(&k.key)));
            continue;
        }
        match truth.keys.get(&(k.db, k.key.clone())) {
            None => errs.push(format!(
                "db {} key {} (rdb_type {}): in the file but not on the server",
                k.db,
                short(&k.key),
                k.rdb_type
            )),
            Some(t) => check_key(k, t, caps, truth, &mut errs),
        }
        let (idle, freq) = (k.idle.is_some(), k.freq.is_some());
        let want = match variant.policy {
            "allkeys-lru" => (true, false),
            "allkeys-lfu" => (false, true),
            _ => (false, false),
        };
        if (idle, freq) != want {
            errs.push(format!(
                "db {} key {}: idle {:?} freq {:?} under maxmemory-policy {}",
                k.db,
                short(&k.key),
                k.idle,
                k.freq,
                variant.policy
            ));
        }
    }
    for (db, key) in truth.keys.keys() {
        if !seen.contains(&(*db, key.clone())) {
            errs.push(format!(
                "db {db} key {}: on the server, not in the file",
                short(key)
            ));
        }
    }
    if per_db != truth.keyspace {
        errs.push(format!(
            "per-db (keys, expires) ours {per_db:?} vs INFO keyspace {:?}",
            truth.keyspace
        ));
    }
    if f.selectdb != truth.keyspace.len() {
        errs.push(format!(
            "{} SELECTDB records for {} databases",
            f.selectdb,
            truth.keyspace.len()
        ));
    }
    if f.resizedb != truth.keyspace.len() {
        errs.push(format!(
            "{} RESIZEDB records for {} databases",
            f.resizedb,
            truth.keyspace.len()
        ));
    }
    crate::raw::check_raw(path, &f, caps, &mut errs);
    if let Some(want) = expected_types(&caps.name) {
        if types != want {
            errs.push(format!(
                "rdb types seen {types:?}, expected for {}: {want:?}",
                caps.name
            ));
        }
    }

    // Functions.
    let ours: BTreeSet<Vec<u8>> = f.functions.iter().cloned().collect();
    if ours != truth.functions || ours.len() != f.functions.len() {
        errs.push(format!(
            "functions ours {:?} vs server {:?}",
            f.functions.iter().map(|c| short(c)).collect::<Vec<_>>(),
            truth.functions.iter().map(|c| short(c)).collect::<Vec<_>>()
        ));
    }

    // Trailer.
    let ck = &f.checksum;
    if !ck.ok() {
        errs.push(format!("checksum not ok: {ck:?}"));
    }
    match (variant.checksum, ck.stored) {
        (true, Some(s)) if s != 0 && s == ck.computed => {}
        (false, Some(0)) => {}
        (_, s) => errs.push(format!(
            "rdbchecksum {}: stored {s:?}, computed {:016x}",
            variant.checksum, ck.computed
        )),
    }
    if f.trailing != 0 {
        errs.push(format!("{} bytes after the trailer", f.trailing));
    }

    check_summary(path, truth, variant, &mut errs);
    (errs, coverage(&f))
}

/// What the file exercised, for the test log.
fn coverage(f: &FileRead) -> String {
    let mut types: BTreeMap<u8, usize> = BTreeMap::new();
    let (mut idle, mut freq, mut expires, mut field_ttls) = (0, 0, 0, 0);
    let (mut streams, mut groups, mut pel, mut consumers, mut producers) = (0, 0, 0, 0, 0);
    for k in &f.keys {
        *types.entry(k.rdb_type).or_default() += 1;
        idle += usize::from(k.idle.is_some());
        freq += usize::from(k.freq.is_some());
        expires += usize::from(k.expire_ms.is_some());
        match &k.value {
            Value::Hash(h) => field_ttls += h.iter().filter(|x| x.expire_ms.is_some()).count(),
            Value::Stream(s) => {
                streams += 1;
                groups += s.groups.len();
                pel += s.groups.iter().map(|g| g.pending.len()).sum::<usize>();
                consumers += s.groups.iter().map(|g| g.consumers.len()).sum::<usize>();
                producers += s.idmp.as_ref().map_or(0, |i| i.producers.len());
            }
            _ => {}
        }
    }
    let aux: Vec<String> = f
        .aux
        .iter()
        .map(|(k, v)| format!("{}={}", short(k), short(v)))
        .collect();
    format!(
        "{}{:03} types {types:?}; {} keys, {expires} with expiry, idle {idle}, freq {freq}; \
         {field_ttls} field TTLs; {streams} streams, {groups} groups, {pel} PEL, \
         {consumers} consumers, {producers} IDMP producers; {} functions; {} hash templates; \
         aux {}",
        f.magic,
        f.version,
        f.keys.len(),
        f.functions.len(),
        f.templates,
        aux.join(" ")
    )
}

/// The same file through `summarize`.
fn check_summary(path: &Path, truth: &Truth, variant: &Variant, errs: &mut Vec<String>) {
    let len = std::fs::metadata(path).unwrap().len();
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let s = match RdbReader::new(f, Some(len), Options::default())
        .and_then(|r| replisnap::summary::summarize(r, crate::truth::now_ms(), |_| {}))
    {
        Ok(s) => s,
        Err(e) => {
            errs.push(format!("summarize failed: {e}"));
            return;
        }
    };
    let total: u64 = truth.keyspace.values().map(|v| v.0).sum();
    if s.keys_total != total || s.keys_loadable != total {
        errs.push(format!(
            "summary keys_total {} keys_loadable {} vs server {total}",
            s.keys_total, s.keys_loadable
        ));
    }
    let dbs: BTreeMap<u64, (u64, u64)> = s
        .databases
        .iter()
        .map(|d| (d.db, (d.keys, d.expires)))
        .collect();
    if dbs != truth.keyspace {
        errs.push(format!(
            "summary databases {dbs:?} vs INFO keyspace {:?}",
            truth.keyspace
        ));
    }
    for d in &s.databases {
        let mut want: BTreeMap<&str, u64> = BTreeMap::new();
        for ((db, _), t) in &truth.keys {
            if *db == d.db {
                *want.entry(t.type_name.as_str()).or_default() += 1;
            }
        }
        let got: BTreeMap<&str, u64> = d
            .types
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        if got != want {
            errs.push(format!(
                "summary db {} types {got:?} vs server {want:?}",
                d.db
            ));
        }
    }
    if s.functions != truth.functions.len() as u64 {
        errs.push(format!(
            "summary functions {} vs server {}",
            s.functions,
            truth.functions.len()
        ));
    }
    if !s.checksum.ok || s.checksum.stored.is_some() != variant.checksum {
        errs.push(format!(
            "summary checksum {:?} with rdbchecksum {}",
            s.checksum, variant.checksum
        ));
    }
}
