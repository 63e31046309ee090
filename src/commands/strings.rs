//! String commands as masters propagate them.

use super::error::{arg_i64, invalid, ApplyError};
use super::parse::{Apply, Parse};
use super::state::{now_ms, StreamState};
use crate::keyspace::{Entry, Keyspace, Packed};
use crate::rdb::Value;

/// The options SET and MSETEX share: NX/XX, an expiry (relative forms made absolute on
/// arrival, as the server's replica does; 7.0+ masters send PXAT), KEEPTTL; SET also takes
/// GET (nothing to do) and the IFEQ/IFNE/IFDEQ/IFDNE conditions.
struct SetOptions {
    nx: bool,
    xx: bool,
    keepttl: bool,
    expire: Option<i64>,
    /// Valkey 8.1+ IFEQ, Redis 8.4+ IFEQ/IFNE/IFDEQ/IFDNE: (kind, operand).
    cond: Option<(String, Vec<u8>)>,
}

impl SetOptions {
    fn parse(cmd: &str, opts: &[Vec<u8>], set: bool) -> Result<SetOptions, ApplyError> {
        let mut o = SetOptions {
            nx: false,
            xx: false,
            keepttl: false,
            expire: None,
            cond: None,
        };
        let mut i = 0;
        while i < opts.len() {
            let name = String::from_utf8_lossy(&opts[i]).to_ascii_uppercase();
            let mut next = || {
                i += 1;
                opts.get(i)
                    .ok_or_else(|| invalid(cmd, format!("{name} needs a value")))
            };
            match name.as_str() {
                "NX" => o.nx = true,
                "XX" => o.xx = true,
                "KEEPTTL" => o.keepttl = true,
                "EX" => o.expire = Some(now_ms() + arg_i64(cmd, next()?)?.saturating_mul(1000)),
                "PX" => o.expire = Some(now_ms() + arg_i64(cmd, next()?)?),
                "EXAT" => o.expire = Some(arg_i64(cmd, next()?)?.saturating_mul(1000)),
                "PXAT" => o.expire = Some(arg_i64(cmd, next()?)?),
                "GET" if set => {}
                "IFEQ" | "IFNE" | "IFDEQ" | "IFDNE" if set => {
                    let v = next()?.clone();
                    o.cond = Some((name.clone(), v));
                }
                _ => return Err(invalid(cmd, format!("unknown option {name}"))),
            }
            i += 1;
        }
        Ok(o)
    }
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`. Masters 7.0+ send
/// absolute PXAT; 6.2 sends the relative forms, which a replica makes absolute on arrival
/// just as the server's replica does.
pub fn set(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, value, opts @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let SetOptions {
        nx,
        xx,
        keepttl,
        mut expire,
        cond,
    } = SetOptions::parse(cmd, opts, true)?;
    // Only NX, XX and KEEPTTL need what the key holds now.
    let old = if nx || xx || keepttl {
        ks.entry(db, key)
    } else {
        None
    };
    if (nx && old.is_some()) || (xx && old.is_none()) {
        return Ok(());
    }
    if let Some((kind, operand)) = &cond {
        if !condition_holds(ks, db, cmd, key, kind, operand)? {
            // The master propagates a conditional SET only when it wrote.
            return Err(invalid(
                cmd,
                format!("{kind} condition false here, true on the master: our data differs"),
            ));
        }
    }
    if keepttl {
        expire = old.as_ref().and_then(|e| e.expire_ms());
    }
    ks.put(db, Entry::Packed(Packed::string(key, expire, value)));
    Ok(())
}

/// Whether a SET/DELEX condition holds on our data. IFDEQ/IFDNE compare a digest of the
/// value (XXH3) the master computed; the master propagates the command only when it held,
/// and our value equals the master's, so they are taken as holding.
fn condition_holds(
    ks: &Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    kind: &str,
    operand: &[u8],
) -> Result<bool, ApplyError> {
    let cur = get_string(ks, db, cmd, key)?.map(|(_, v)| v);
    Ok(match kind {
        "IFEQ" => cur.as_deref() == Some(operand),
        "IFNE" => cur.as_deref() != Some(operand),
        "IFDEQ" => cur.is_some(),
        _ => true,
    })
}

/// DELEX key [IFEQ v|IFNE v|IFDEQ d|IFDNE d] (Redis 8.4+ propagate it as DEL) and Valkey
/// 9's DELIFEQ key value, applied as typed should a master send them.
pub fn delex(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let (key, cond) = match (cmd, args) {
        ("DELIFEQ", [k, v]) => (k, Some(("IFEQ".to_string(), v.clone()))),
        ("DELEX", [k]) => (k, None),
        ("DELEX", [k, kind, v]) => (
            k,
            Some((
                String::from_utf8_lossy(kind).to_ascii_uppercase(),
                v.clone(),
            )),
        ),
        _ => return Err(invalid(cmd, "wrong number of arguments")),
    };
    if let Some((kind, operand)) = &cond {
        if !condition_holds(ks, db, cmd, key, kind, operand)? {
            return Ok(());
        }
    }
    ks.remove(db, key);
    Ok(())
}

/// MSETEX numkeys key value… [NX|XX] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL] (Redis 8.4+;
/// masters rewrite EX/PX to PXAT). NX/XX hold for every key or nothing is written.
pub fn msetex(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [numkeys, rest @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let n = usize::try_from(arg_i64(cmd, numkeys)?)
        .ok()
        .filter(|&n| n >= 1 && n.checked_mul(2).is_some_and(|m| m <= rest.len()))
        .ok_or_else(|| invalid(cmd, "bad numkeys"))?;
    let (pairs, opts) = rest.split_at(n * 2);
    let SetOptions {
        nx,
        xx,
        keepttl,
        expire,
        ..
    } = SetOptions::parse(cmd, opts, false)?;
    for p in pairs.chunks_exact(2) {
        let found = ks.entry(db, &p[0]).is_some();
        if (nx && found) || (xx && !found) {
            return Ok(());
        }
    }
    for p in pairs.chunks_exact(2) {
        let ttl = if keepttl {
            ks.entry(db, &p[0]).and_then(|e| e.expire_ms())
        } else {
            expire
        };
        ks.set(db, &p[0], ttl, &Value::String(p[1].clone()), None)?;
    }
    Ok(())
}

/// A string the server's `string2ll` accepts as an integer (canonical decimal, ≤ 20 chars).
pub fn parse_strict_i64(s: &[u8]) -> Option<i64> {
    crate::rdb::writer::packed::canonical_int(s)
}

use super::value_ops::get_string;

/// INCR, DECR, INCRBY, DECRBY: the key keeps its TTL.
pub fn incr(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let (key, by) = match (cmd, args) {
        ("INCR", [k]) => (k, 1),
        ("DECR", [k]) => (k, -1),
        ("INCRBY", [k, n]) => (k, arg_i64(cmd, n)?),
        // Redis 6.2 negates with wrap-around (DECRBY x -2^63 adds -2^63); 7.0+ refuses it,
        // so it never arrives from those.
        ("DECRBY", [k, n]) => (k, arg_i64(cmd, n)?.wrapping_neg()),
        _ => return Err(invalid(cmd, "wrong number of arguments")),
    };
    let (h, cur) = get_string(ks, db, cmd, key)?.unwrap_or_default();
    let cur = if cur.is_empty() && ks.entry(db, key).is_none() {
        0
    } else {
        parse_strict_i64(&cur)
            .ok_or_else(|| invalid(cmd, "value is not an integer: our data differs"))?
    };
    let n = cur
        .checked_add(by)
        .ok_or_else(|| invalid(cmd, "overflow: our data differs"))?;
    super::value_ops::store(ks, db, key, &h, &Value::String(n.to_string().into_bytes()))
}

pub fn append(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, v] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let (h, mut cur) = get_string(ks, db, cmd, key)?.unwrap_or_default();
    cur.extend_from_slice(v);
    super::value_ops::store(ks, db, key, &h, &Value::String(cur))
}

/// SETRANGE key offset value: zero-padded; an empty value on a missing key creates nothing.
pub fn setrange(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, off, v] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let off = arg_i64(cmd, off)?;
    if !(0..512 << 20).contains(&off) {
        return Err(invalid(cmd, "offset out of range"));
    }
    let existing = get_string(ks, db, cmd, key)?;
    if v.is_empty() {
        return Ok(());
    }
    let (h, mut cur) = existing.unwrap_or_default();
    let off = off as usize;
    if cur.len() < off + v.len() {
        cur.resize(off + v.len(), 0);
    }
    cur[off..off + v.len()].copy_from_slice(v);
    super::value_ops::store(ks, db, key, &h, &Value::String(cur))
}

/// MSET and MSETNX (all or nothing), SETNX, SETEX, PSETEX.
pub fn multi_set(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    args: &[Vec<u8>],
) -> Result<(), ApplyError> {
    match cmd {
        "MSET" | "MSETNX" => {
            if args.is_empty() || args.len() % 2 != 0 {
                return Err(invalid(cmd, "wrong number of arguments"));
            }
            if cmd == "MSETNX" && args.chunks_exact(2).any(|p| ks.entry(db, &p[0]).is_some()) {
                return Ok(());
            }
            for p in args.chunks_exact(2) {
                ks.set(db, &p[0], None, &Value::String(p[1].clone()), None)?;
            }
            Ok(())
        }
        "SETNX" => {
            let [k, v] = args else {
                return Err(invalid(cmd, "wrong number of arguments"));
            };
            if ks.entry(db, k).is_none() {
                ks.set(db, k, None, &Value::String(v.clone()), None)?;
            }
            Ok(())
        }
        "SETEX" | "PSETEX" => {
            let [k, t, v] = args else {
                return Err(invalid(cmd, "wrong number of arguments"));
            };
            let t = arg_i64(cmd, t)?;
            let ms = if cmd == "SETEX" {
                t.saturating_mul(1000)
            } else {
                t
            };
            ks.set(
                db,
                k,
                Some(now_ms().saturating_add(ms)),
                &Value::String(v.clone()),
                None,
            )?;
            Ok(())
        }
        _ => Err(invalid(cmd, "not a multi-set command")),
    }
}

// ---------------------------------------------------------------- parsed form
// Transitional: the name and raw arguments, applied by the functions above. Each family
// moves to typed variants (see parse.rs).

/// A command of this family, parsed.
pub(super) struct Cmd<'a> {
    name: &'static str,
    args: &'a [Vec<u8>],
}

pub(super) fn parse(mut p: Parse<'_>) -> Result<Cmd<'_>, ApplyError> {
    Ok(Cmd {
        name: p.name(),
        args: p.rest(),
    })
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        let (name, args) = (self.name, self.args);
        match name {
            "SET" => set(ks, st.db, name, args),
            "INCR" | "DECR" | "INCRBY" | "DECRBY" => incr(ks, st.db, name, args),
            "APPEND" => append(ks, st.db, name, args),
            "DELEX" | "DELIFEQ" => delex(ks, st.db, name, args),
            "MSETEX" => msetex(ks, st.db, name, args),
            "SETRANGE" => setrange(ks, st.db, name, args),
            "MSET" | "MSETNX" | "SETNX" | "SETEX" | "PSETEX" => multi_set(ks, st.db, name, args),
            _ => Err(ApplyError::Unknown(name.to_string())),
        }
    }
}
