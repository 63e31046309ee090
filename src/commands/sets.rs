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
