//! List commands in their propagated forms (blocking pops arrive as LPOP/RPOP/LMOVE).

use super::value_ops::{load, store, wrongtype};
use super::{arg_i64, invalid, ApplyError};
use crate::keyspace::{Hints, Keyspace};
use crate::rdb::Value;

/// A key's hints and its elements.
type Loaded = (Hints, Vec<Vec<u8>>);

fn get_list(ks: &Keyspace, db: u64, cmd: &str, key: &[u8]) -> Result<Option<Loaded>, ApplyError> {
    match load(ks, db, key)? {
        None => Ok(None),
        Some((h, Value::List(l))) => Ok(Some((h, l))),
        Some(_) => Err(wrongtype(cmd, key)),
    }
}

fn put(
    ks: &mut Keyspace,
    db: u64,
    key: &[u8],
    h: &Hints,
    l: Vec<Vec<u8>>,
) -> Result<(), ApplyError> {
    store(ks, db, key, h, &Value::List(l))
}

pub fn push(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, vals @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    if vals.is_empty() {
        return Err(invalid(cmd, "wrong number of arguments"));
    }
    let existing = get_list(ks, db, cmd, key)?;
    let only_if_exists = cmd.ends_with('X');
    if only_if_exists && existing.is_none() {
        return Ok(());
    }
    let (h, mut l) = existing.unwrap_or_default();
    if cmd.starts_with('L') {
        for v in vals {
            l.insert(0, v.clone());
        }
    } else {
        l.extend(vals.iter().cloned());
    }
    put(ks, db, key, &h, l)
}

/// LPOP/RPOP key [count].
pub fn pop(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let (key, count) = match args {
        [k] => (k, 1),
        [k, c] => (k, arg_i64(cmd, c)?.max(0) as usize),
        _ => return Err(invalid(cmd, "wrong number of arguments")),
    };
    let Some((h, mut l)) = get_list(ks, db, cmd, key)? else {
        return Ok(());
    };
    let n = count.min(l.len());
    if cmd == "LPOP" {
        l.drain(..n);
    } else {
        l.truncate(l.len() - n);
    }
    put(ks, db, key, &h, l)
}

fn index(len: usize, i: i64) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

pub fn lset(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, idx, v] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let Some((h, mut l)) = get_list(ks, db, cmd, key)? else {
        return Err(invalid(
            cmd,
            "no such key: our data differs from the master's",
        ));
    };
    let i = index(l.len(), arg_i64(cmd, idx)?)
        .ok_or_else(|| invalid(cmd, "index out of range: our data differs"))?;
    l[i] = v.clone();
    put(ks, db, key, &h, l)
}

pub fn ltrim(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, start, stop] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let Some((h, l)) = get_list(ks, db, cmd, key)? else {
        return Ok(());
    };
    let len = l.len() as i64;
    let mut s = arg_i64(cmd, start)?;
    let mut e = arg_i64(cmd, stop)?;
    if s < 0 {
        s += len;
    }
    if e < 0 {
        e += len;
    }
    s = s.max(0);
    let kept = if s > e || s >= len {
        Vec::new()
    } else {
        let e = e.min(len - 1);
        l[s as usize..=e as usize].to_vec()
    };
    put(ks, db, key, &h, kept)
}

pub fn lrem(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, count, v] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let Some((h, mut l)) = get_list(ks, db, cmd, key)? else {
        return Ok(());
    };
    let count = arg_i64(cmd, count)?;
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let mut removed = 0;
    if count >= 0 {
        l.retain(|x| {
            if removed < limit && x == v {
                removed += 1;
                false
            } else {
                true
            }
        });
    } else {
        let mut keep = vec![true; l.len()];
        for i in (0..l.len()).rev() {
            if removed < limit && &l[i] == v {
                keep[i] = false;
                removed += 1;
            }
        }
        let mut it = keep.into_iter();
        l.retain(|_| it.next().unwrap_or(true));
    }
    put(ks, db, key, &h, l)
}

pub fn linsert(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, wh, pivot, v] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let Some((h, mut l)) = get_list(ks, db, cmd, key)? else {
        return Ok(());
    };
    let after = match String::from_utf8_lossy(wh).to_ascii_uppercase().as_str() {
        "BEFORE" => false,
        "AFTER" => true,
        o => return Err(invalid(cmd, format!("unknown position {o}"))),
    };
    if let Some(i) = l.iter().position(|x| x == pivot) {
        l.insert(if after { i + 1 } else { i }, v.clone());
        put(ks, db, key, &h, l)?;
    }
    Ok(())
}

/// LMOVE src dst LEFT|RIGHT LEFT|RIGHT, and RPOPLPUSH src dst.
pub fn lmove(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let (src, dst, from_left, to_left) = match (cmd, args) {
        ("RPOPLPUSH", [s, d]) => (s, d, false, true),
        ("LMOVE", [s, d, f, t]) => {
            let side = |x: &[u8]| match String::from_utf8_lossy(x).to_ascii_uppercase().as_str() {
                "LEFT" => Ok(true),
                "RIGHT" => Ok(false),
                o => Err(invalid(cmd, format!("unknown side {o}"))),
            };
            (s, d, side(f)?, side(t)?)
        }
        _ => return Err(invalid(cmd, "wrong number of arguments")),
    };
    let Some((sh, mut sl)) = get_list(ks, db, cmd, src)? else {
        return Ok(());
    };
    // The destination's type is checked before anything moves, as the server does.
    let dest = if src == dst {
        None
    } else {
        get_list(ks, db, cmd, dst)?
    };
    let Some(v) = (if from_left {
        (!sl.is_empty()).then(|| sl.remove(0))
    } else {
        sl.pop()
    }) else {
        return Ok(());
    };
    if src == dst {
        if to_left {
            sl.insert(0, v);
        } else {
            sl.push(v);
        }
        return put(ks, db, src, &sh, sl);
    }
    put(ks, db, src, &sh, sl)?;
    let (dh, mut dl) = dest.unwrap_or_default();
    if to_left {
        dl.insert(0, v);
    } else {
        dl.push(v);
    }
    put(ks, db, dst, &dh, dl)
}
