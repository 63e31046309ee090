//! Hash commands in their propagated forms (HINCRBYFLOAT arrives as HSET).

use super::value_ops::{load, store, wrongtype};
use super::{arg_i64, invalid, ApplyError};
use crate::keyspace::{Hints, Keyspace};
use crate::rdb::value::HashField;
use crate::rdb::Value;

fn get_hash(
    ks: &Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
) -> Result<Option<(Hints, Vec<HashField>)>, ApplyError> {
    match load(ks, db, key)? {
        None => Ok(None),
        Some((h, Value::Hash(f))) => Ok(Some((h, f))),
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
pub fn hset(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, pairs @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    if pairs.is_empty() || pairs.len() % 2 != 0 {
        return Err(invalid(cmd, "wrong number of arguments"));
    }
    let (h, mut fields) = get_hash(ks, db, cmd, key)?.unwrap_or_default();
    for p in pairs.chunks_exact(2) {
        set_field(&mut fields, &p[0], &p[1]);
    }
    store(ks, db, key, &h, &Value::Hash(fields))
}

pub fn hsetnx(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, f, v] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let (h, mut fields) = get_hash(ks, db, cmd, key)?.unwrap_or_default();
    if fields.iter().any(|x| &x.field == f) {
        return Ok(());
    }
    set_field(&mut fields, f, v);
    store(ks, db, key, &h, &Value::Hash(fields))
}

pub fn hdel(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, names @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let Some((h, mut fields)) = get_hash(ks, db, cmd, key)? else {
        return Ok(());
    };
    fields.retain(|x| !names.contains(&x.field));
    store(ks, db, key, &h, &Value::Hash(fields))
}

pub fn hincrby(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, f, by] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let by = arg_i64(cmd, by)?;
    let (h, mut fields) = get_hash(ks, db, cmd, key)?.unwrap_or_default();
    let cur = match fields.iter().find(|x| &x.field == f) {
        None => 0,
        Some(x) => super::strings::parse_strict_i64(&x.value)
            .ok_or_else(|| invalid(cmd, "field is not an integer: our data differs"))?,
    };
    let n = cur
        .checked_add(by)
        .ok_or_else(|| invalid(cmd, "overflow: our data differs"))?;
    // The field keeps its TTL through HINCRBY.
    match fields.iter_mut().find(|x| &x.field == f) {
        Some(x) => x.value = n.to_string().into_bytes(),
        None => set_field(&mut fields, f, n.to_string().as_bytes()),
    }
    store(ks, db, key, &h, &Value::Hash(fields))
}
