//! Set commands in their propagated forms (SPOP arrives as SREM or DEL).

use super::value_ops::{load, store, wrongtype};
use super::{invalid, ApplyError};
use crate::keyspace::{Hints, Keyspace};
use crate::rdb::Value;

/// A key's hints and its elements.
type Loaded = (Hints, Vec<Vec<u8>>);

fn get_set(ks: &Keyspace, db: u64, cmd: &str, key: &[u8]) -> Result<Option<Loaded>, ApplyError> {
    match load(ks, db, key)? {
        None => Ok(None),
        Some((h, Value::Set(m))) => Ok(Some((h, m))),
        Some(_) => Err(wrongtype(cmd, key)),
    }
}

pub fn sadd(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, members @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let (h, mut m) = get_set(ks, db, cmd, key)?.unwrap_or_default();
    for x in members {
        if !m.contains(x) {
            m.push(x.clone());
        }
    }
    store(ks, db, key, &h, &Value::Set(m))
}

pub fn srem(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, members @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let Some((h, mut m)) = get_set(ks, db, cmd, key)? else {
        return Ok(());
    };
    m.retain(|x| !members.contains(x));
    store(ks, db, key, &h, &Value::Set(m))
}

pub fn smove(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [src, dst, member] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let Some((sh, mut sm)) = get_set(ks, db, cmd, src)? else {
        return Ok(());
    };
    let dest = get_set(ks, db, cmd, dst)?;
    let Some(i) = sm.iter().position(|x| x == member) else {
        return Ok(());
    };
    if src == dst {
        return Ok(());
    }
    sm.remove(i);
    store(ks, db, src, &sh, &Value::Set(sm))?;
    let (dh, mut dm) = dest.unwrap_or_default();
    if !dm.contains(member) {
        dm.push(member.clone());
    }
    store(ks, db, dst, &dh, &Value::Set(dm))
}

/// SINTERSTORE / SUNIONSTORE / SDIFFSTORE dest key…: the destination is replaced (no
/// TTL), or deleted when the result is empty; a missing source reads as empty.
pub fn setop_store(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    args: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let [dest, keys @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    if keys.is_empty() {
        return Err(invalid(cmd, "wrong number of arguments"));
    }
    let mut sources = Vec::with_capacity(keys.len());
    for k in keys {
        sources.push(get_set(ks, db, cmd, k)?.map(|(_, m)| m).unwrap_or_default());
    }
    let contains = |s: &Vec<Vec<u8>>, x: &Vec<u8>| s.contains(x);
    let Some((first, rest)) = sources.split_first() else {
        return Err(invalid(cmd, "no source keys"));
    };
    let result: Vec<Vec<u8>> = match cmd {
        "SINTERSTORE" => first
            .iter()
            .filter(|x| rest.iter().all(|s| contains(s, x)))
            .cloned()
            .collect(),
        "SDIFFSTORE" => first
            .iter()
            .filter(|x| !rest.iter().any(|s| contains(s, x)))
            .cloned()
            .collect(),
        _ => {
            let mut seen = std::collections::HashSet::new();
            sources
                .iter()
                .flatten()
                .filter(|x| seen.insert(x.as_slice()))
                .cloned()
                .collect()
        }
    };
    store(ks, db, dest, &Hints::default(), &Value::Set(result))
}
