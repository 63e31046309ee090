//! Hash commands in their propagated forms (HINCRBYFLOAT arrives as HSET), applied:
//! each takes the typed form `hashes_parse` made of its arguments.

use super::error::{invalid, ApplyError};
pub(super) use super::hashes_parse::{parse, Cmd};
use super::hashes_parse::{ExpireCond, FieldExpire, HSetEx, Op};
use super::packed_edit::{self, Found, Item};
use super::parse::Apply;
use super::state::StreamState;
use super::value_ops::{load_typed, on_native, prepare, prepare_found, store, wrongtype, Decoded};
use crate::keyspace::native::{ChunkMap, HashRec, NATIVE_MIN};
use crate::keyspace::{Entry, Hints, Keyspace, Kind, Native, Packed};
use crate::rdb::types::HASH_LISTPACK;
use crate::rdb::value::HashField;
use crate::rdb::writer::target::thresholds::{HASH_MAX_LISTPACK_ENTRIES, HASH_MAX_LISTPACK_VALUE};
use crate::rdb::Value;

fn get_hash(
    ks: &Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
) -> Result<Option<(Hints, Vec<HashField>)>, ApplyError> {
    as_hash(cmd, key, load_typed(ks, db, key)?)
}

fn as_hash(
    cmd: &str,
    key: &[u8],
    d: Option<Decoded>,
) -> Result<Option<(Hints, Vec<HashField>)>, ApplyError> {
    match d {
        None => Ok(None),
        Some((h, Value::Hash(f), _)) => Ok(Some((h, f))),
        Some(_) => Err(wrongtype(cmd, key)),
    }
}

/// Set a field, clearing any TTL it had (as HSET does).
fn set_field(fields: &mut Vec<HashField>, f: &[u8], v: &[u8]) {
    match fields.iter_mut().find(|x| x.field == f) {
        Some(x) => {
            x.value = v.to_vec();
            x.expire_ms = None;
        }
        None => fields.push(HashField {
            field: f.to_vec(),
            value: v.to_vec(),
            expire_ms: None,
        }),
    }
}

/// HSET/HMSET key field value [field value ...].
fn hset(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    pairs: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let found = match packed_edit::find(ks, db, key, &[HASH_LISTPACK]) {
        Found::Packed(p) => {
            if hset_listpack(ks, db, &p, pairs) {
                return Ok(());
            }
            Some(Entry::Packed(p))
        }
        Found::Other(e) => e,
    };
    let found = prepare_found(ks, db, cmd, key, Kind::Hash, pairs.len() / 2, true, found)?;
    if let Some(r) = found.run(|| {
        on_hash(ks, db, cmd, key, |m| {
            for p in pairs.chunks_exact(2) {
                m.insert(HashRec::new(&p[0], &p[1], None));
            }
            Ok(())
        })
    }) {
        return r;
    }
    let (h, mut fields) = as_hash(cmd, key, found.packed())?.unwrap_or_default();
    for p in pairs.chunks_exact(2) {
        set_field(&mut fields, &p[0], &p[1]);
    }
    store(ks, db, key, &h, &Value::Hash(fields))
}

/// HSET on a hash held as a listpack, entry by entry; `false` (nothing stored) when the
/// result would not be a listpack of fewer than NATIVE_MIN fields, as the general path
/// decides.
fn hset_listpack(ks: &mut Keyspace, db: u64, p: &Packed, pairs: &[Vec<u8>]) -> bool {
    if pairs.iter().any(|x| x.len() > HASH_MAX_LISTPACK_VALUE) {
        return false;
    }
    let Some(mut it) = packed_edit::blob(p.payload()).and_then(packed_edit::items) else {
        return false;
    };
    if it.len() % 2 != 0 || it.len() / 2 + pairs.len() / 2 >= NATIVE_MIN {
        return false;
    }
    for pair in pairs.chunks_exact(2) {
        match (0..it.len()).step_by(2).find(|&i| it[i].is(&pair[0])) {
            Some(i) => it[i + 1] = Item::new(&pair[1]),
            None => {
                it.push(Item::new(&pair[0]));
                it.push(Item::new(&pair[1]));
            }
        }
    }
    if it.len() / 2 > HASH_MAX_LISTPACK_ENTRIES {
        return false;
    }
    packed_edit::store(ks, db, p, HASH_LISTPACK, &packed_edit::listpack(&it));
    true
}

/// Run `f` on a native hash (`None`: the key is absent or packed).
fn on_hash<R>(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    f: impl FnOnce(&mut ChunkMap<HashRec>) -> Result<R, ApplyError>,
) -> Option<Result<R, ApplyError>> {
    on_native(ks, db, cmd, key, Kind::Hash, |n| match n {
        Native::Hash(m) => f(m),
        _ => Err(wrongtype(cmd, key)),
    })
}

fn hsetnx(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    f: &[u8],
    v: &[u8],
) -> Result<(), ApplyError> {
    let found = prepare(ks, db, cmd, key, Kind::Hash, 1, false)?;
    if let Some(r) = found.run(|| {
        on_hash(ks, db, cmd, key, |m| {
            if !m.contains(f) {
                m.insert(HashRec::new(f, v, None));
            }
            Ok(())
        })
    }) {
        return r;
    }
    let (h, mut fields) = as_hash(cmd, key, found.packed())?.unwrap_or_default();
    if fields.iter().any(|x| x.field == f) {
        return Ok(());
    }
    set_field(&mut fields, f, v);
    store(ks, db, key, &h, &Value::Hash(fields))
}

fn hdel(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    names: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let found = prepare(ks, db, cmd, key, Kind::Hash, 0, false)?;
    if let Some(r) = found.run(|| {
        on_hash(ks, db, cmd, key, |m| {
            for n in names {
                m.remove(n);
            }
            Ok(())
        })
    }) {
        return r;
    }
    let Some((h, mut fields)) = as_hash(cmd, key, found.packed())? else {
        return Ok(());
    };
    let gone: std::collections::HashSet<&[u8]> = names.iter().map(|x| x.as_slice()).collect();
    fields.retain(|x| !gone.contains(x.field.as_slice()));
    store(ks, db, key, &h, &Value::Hash(fields))
}

fn hincrby(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    f: &[u8],
    by: i64,
) -> Result<(), ApplyError> {
    let found = prepare(ks, db, cmd, key, Kind::Hash, 1, false)?;
    if let Some(r) = found.run(|| {
        on_hash(ks, db, cmd, key, |m| {
            let (cur, ttl) = match m.get(f) {
                None => (0, None),
                Some(x) => (
                    super::strings::parse_strict_i64(x.value())
                        .ok_or_else(|| invalid(cmd, "field is not an integer: our data differs"))?,
                    x.ttl(),
                ),
            };
            let n = cur
                .checked_add(by)
                .ok_or_else(|| invalid(cmd, "overflow: our data differs"))?;
            // The field keeps its TTL through HINCRBY.
            m.insert(HashRec::new(f, n.to_string().as_bytes(), ttl));
            Ok(())
        })
    }) {
        return r;
    }
    let (h, mut fields) = as_hash(cmd, key, found.packed())?.unwrap_or_default();
    let cur = match fields.iter().find(|x| x.field == f) {
        None => 0,
        Some(x) => super::strings::parse_strict_i64(&x.value)
            .ok_or_else(|| invalid(cmd, "field is not an integer: our data differs"))?,
    };
    let n = cur
        .checked_add(by)
        .ok_or_else(|| invalid(cmd, "overflow: our data differs"))?;
    // The field keeps its TTL through HINCRBY.
    match fields.iter_mut().find(|x| x.field == f) {
        Some(x) => x.value = n.to_string().into_bytes(),
        None => set_field(&mut fields, f, n.to_string().as_bytes()),
    }
    store(ks, db, key, &h, &Value::Hash(fields))
}

/// HPEXPIREAT (what 7.4+/Valkey 9 masters send for every field-expiry command) and the
/// relative HEXPIRE/HPEXPIRE/HEXPIREAT, with NX/XX/GT/LT per field.
fn hexpire(ks: &mut Keyspace, db: u64, cmd: &str, e: FieldExpire<'_>) -> Result<(), ApplyError> {
    let FieldExpire {
        key,
        when,
        cond,
        fields: names,
    } = e;
    let skip = |cur: Option<u64>| match cond {
        ExpireCond::Nx => cur.is_some(),
        ExpireCond::Xx => cur.is_none(),
        ExpireCond::Gt => cur.is_none_or(|c| when <= c),
        ExpireCond::Lt => cur.is_some_and(|c| when >= c),
        ExpireCond::Always => false,
    };
    set_field_ttls(ks, db, cmd, key, names, Some(when), skip)
}

/// The TTL of each named field that exists and that `skip` does not refuse set to `ttl`
/// (HEXPIRE and its relatives, HPERSIST).
fn set_field_ttls(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    names: &[Vec<u8>],
    ttl: Option<u64>,
    skip: impl Fn(Option<u64>) -> bool,
) -> Result<(), ApplyError> {
    let found = prepare(ks, db, cmd, key, Kind::Hash, 0, false)?;
    if let Some(r) = found.run(|| {
        on_hash(ks, db, cmd, key, |m| {
            for n in names {
                let Some(rec) = m.get(n) else { continue };
                if !skip(rec.ttl()) {
                    let new = HashRec::new(rec.field(), rec.value(), ttl);
                    m.insert(new);
                }
            }
            Ok(())
        })
    }) {
        return r;
    }
    let Some((h, mut fields)) = as_hash(cmd, key, found.packed())? else {
        return Ok(());
    };
    let names: std::collections::HashSet<&[u8]> = names.iter().map(|x| x.as_slice()).collect();
    for f in fields
        .iter_mut()
        .filter(|f| names.contains(f.field.as_slice()))
    {
        if !skip(f.expire_ms) {
            f.expire_ms = ttl;
        }
    }
    store(ks, db, key, &h, &Value::Hash(fields))
}

/// HPERSIST key FIELDS n f…
fn hpersist(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    names: &[Vec<u8>],
) -> Result<(), ApplyError> {
    // A field without a TTL is left as it is.
    set_field_ttls(ks, db, cmd, key, names, None, |cur| cur.is_none())
}

/// HSETEX (Redis 8, Valkey 9): `key [NX|XX] [FNX|FXX] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]
/// FIELDS n f v …`, sets the fields with one expiry (or none, or each keeping its own).
fn hsetex(ks: &mut Keyspace, db: u64, cmd: &str, x: HSetEx<'_>) -> Result<(), ApplyError> {
    let HSetEx {
        key,
        nx,
        xx,
        fnx,
        fxx,
        keepttl,
        expire,
        pairs,
    } = x;
    let existing = get_hash(ks, db, cmd, key)?;
    if (nx && existing.is_some()) || (xx && existing.is_none()) {
        return Ok(());
    }
    let (h, mut fields) = existing.unwrap_or_default();
    let present = |f: &[u8], fields: &[HashField]| fields.iter().any(|x| x.field == f);
    if fnx && pairs.chunks_exact(2).any(|p| present(&p[0], &fields)) {
        return Ok(());
    }
    if fxx && !pairs.chunks_exact(2).all(|p| present(&p[0], &fields)) {
        return Ok(());
    }
    let ttl = expire;
    for p in pairs.chunks_exact(2) {
        let kept = fields
            .iter()
            .find(|x| x.field == p[0])
            .and_then(|x| x.expire_ms);
        set_field(&mut fields, &p[0], &p[1]);
        if let Some(x) = fields.iter_mut().find(|x| x.field == p[0]) {
            x.expire_ms = if keepttl { kept } else { ttl };
        }
    }
    store(ks, db, key, &h, &Value::Hash(fields))
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        let (db, name) = (st.db, self.name);
        match self.op {
            Op::Set { key, pairs } => hset(ks, db, name, key, pairs),
            Op::SetNx { key, field, value } => hsetnx(ks, db, name, key, field, value),
            Op::Del { key, fields } => hdel(ks, db, name, key, fields),
            Op::IncrBy { key, field, by } => hincrby(ks, db, name, key, field, by),
            Op::Expire(e) => hexpire(ks, db, name, e),
            Op::Persist { key, fields } => hpersist(ks, db, name, key, fields),
            Op::SetEx(x) => hsetex(ks, db, name, x),
        }
    }
}
