//! Sorted-set commands in their propagated forms (GEOADD arrives as ZADD, blocking pops
//! as ZPOPMIN/ZPOPMAX).

use super::value_ops::{load, store, wrongtype};
use super::{arg_i64, invalid, ApplyError};
use crate::keyspace::{Hints, Keyspace};
use crate::rdb::Value;

type Pairs = Vec<(Vec<u8>, f64)>;

fn get_zset(
    ks: &Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
) -> Result<Option<(Hints, Pairs)>, ApplyError> {
    match load(ks, db, key)? {
        None => Ok(None),
        Some((h, Value::SortedSet(p))) => Ok(Some((h, p))),
        Some(_) => Err(wrongtype(cmd, key)),
    }
}

fn score(cmd: &str, a: &[u8]) -> Result<f64, ApplyError> {
    crate::rdb::parse_double(a)
        .filter(|d| !d.is_nan())
        .ok_or_else(|| {
            invalid(
                cmd,
                format!("not a valid score: {:?}", String::from_utf8_lossy(a)),
            )
        })
}

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...].
pub fn zadd(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, rest @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let (mut nx, mut xx, mut gt, mut lt, mut incr) = (false, false, false, false, false);
    let mut i = 0;
    while i < rest.len() {
        match String::from_utf8_lossy(&rest[i])
            .to_ascii_uppercase()
            .as_str()
        {
            "NX" => nx = true,
            "XX" => xx = true,
            "GT" => gt = true,
            "LT" => lt = true,
            "CH" => {}
            "INCR" => incr = true,
            _ => break,
        }
        i += 1;
    }
    let pairs = &rest[i..];
    if pairs.is_empty() || pairs.len() % 2 != 0 {
        return Err(invalid(cmd, "wrong number of arguments"));
    }
    let (h, mut z) = get_zset(ks, db, cmd, key)?.unwrap_or_default();
    for p in pairs.chunks_exact(2) {
        let s = score(cmd, &p[0])?;
        let m = &p[1];
        match z.iter_mut().find(|(x, _)| x == m) {
            Some((_, cur)) => {
                if nx {
                    continue;
                }
                let new = if incr { *cur + s } else { s };
                if new.is_nan() {
                    return Err(invalid(cmd, "NaN result: our data differs"));
                }
                if (gt && new <= *cur) || (lt && new >= *cur) {
                    continue;
                }
                *cur = new;
            }
            None => {
                if xx {
                    continue;
                }
                z.push((m.clone(), s));
            }
        }
    }
    store(ks, db, key, &h, &Value::SortedSet(z))
}

pub fn zincrby(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, by, member] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let by = score(cmd, by)?;
    let (h, mut z) = get_zset(ks, db, cmd, key)?.unwrap_or_default();
    match z.iter_mut().find(|(x, _)| x == member) {
        Some((_, cur)) => {
            let n = *cur + by;
            if n.is_nan() {
                return Err(invalid(cmd, "NaN result: our data differs"));
            }
            *cur = n;
        }
        None => z.push((member.clone(), by)),
    }
    store(ks, db, key, &h, &Value::SortedSet(z))
}

pub fn zrem(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, members @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let Some((h, mut z)) = get_zset(ks, db, cmd, key)? else {
        return Ok(());
    };
    z.retain(|(m, _)| !members.contains(m));
    store(ks, db, key, &h, &Value::SortedSet(z))
}

/// ZPOPMIN/ZPOPMAX key [count].
pub fn zpop(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let (key, count) = match args {
        [k] => (k, 1usize),
        [k, c] => (k, arg_i64(cmd, c)?.max(0) as usize),
        _ => return Err(invalid(cmd, "wrong number of arguments")),
    };
    let Some((h, mut z)) = get_zset(ks, db, cmd, key)? else {
        return Ok(());
    };
    z.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    let n = count.min(z.len());
    if cmd == "ZPOPMIN" {
        z.drain(..n);
    } else {
        z.truncate(z.len() - n);
    }
    store(ks, db, key, &h, &Value::SortedSet(z))
}
