//! String commands as masters propagate them: parsed into a typed [`Cmd`] (the only place
//! that reads a command's name and steps through its arguments), then applied.

use super::error::{invalid, ApplyError};
use super::parse::{upper, Apply, Parse};
use super::state::{now_ms, StreamState};
use super::value_ops::{get_string, store};
use crate::keyspace::{Entry, Keyspace, Packed};
use crate::rdb::Value;

/// A string command, parsed: its name (for messages) and what it does.
pub(super) struct Cmd<'a> {
    name: &'static str,
    op: Op<'a>,
}

pub(super) enum Op<'a> {
    /// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL] [IF… operand]`.
    Set {
        key: &'a [u8],
        value: &'a [u8],
        opts: SetOptions<'a>,
    },
    /// INCR, DECR, INCRBY, DECRBY: add `by`.
    IncrBy {
        key: &'a [u8],
        by: i64,
    },
    Append {
        key: &'a [u8],
        value: &'a [u8],
    },
    /// DELEX key [IF… operand], DELIFEQ key value.
    DelEx {
        key: &'a [u8],
        cond: Option<Cond<'a>>,
    },
    /// MSETEX numkeys key value… [NX|XX] [expiry|KEEPTTL].
    MSetEx {
        pairs: &'a [Vec<u8>],
        opts: SetOptions<'a>,
    },
    SetRange {
        key: &'a [u8],
        offset: usize,
        value: &'a [u8],
    },
    /// MSET, or MSETNX (`nx`: all or nothing).
    MSet {
        pairs: &'a [Vec<u8>],
        nx: bool,
    },
    SetNx {
        key: &'a [u8],
        value: &'a [u8],
    },
    /// SETEX, PSETEX, with the expiry made absolute.
    SetEx {
        key: &'a [u8],
        at_ms: i64,
        value: &'a [u8],
    },
}

/// A condition on the key's current value (Valkey 8.1+ IFEQ; Redis 8.4+ IFEQ/IFNE/IFDEQ/
/// IFDNE; DELEX takes any word and an unknown one holds).
pub(super) struct Cond<'a> {
    kind: CondKind,
    /// The condition as the master named it, for messages.
    label: String,
    operand: &'a [u8],
}

#[derive(Clone, Copy, PartialEq)]
enum CondKind {
    IfEq,
    IfNe,
    /// IFDEQ compares a digest (XXH3) the master computed: it holds wherever a value exists.
    IfDEq,
    /// IFDNE, or a word DELEX does not know: taken as holding.
    Holds,
}

impl<'a> Cond<'a> {
    fn new(word: &[u8], operand: &'a [u8]) -> Cond<'a> {
        let label = String::from_utf8_lossy(word).to_ascii_uppercase();
        let kind = match label.as_str() {
            "IFEQ" => CondKind::IfEq,
            "IFNE" => CondKind::IfNe,
            "IFDEQ" => CondKind::IfDEq,
            _ => CondKind::Holds,
        };
        Cond {
            kind,
            label,
            operand,
        }
    }
}

/// The options SET and MSETEX share: NX/XX, an expiry (relative forms made absolute on
/// arrival, as the server's replica does; 7.0+ masters send PXAT), KEEPTTL; SET also takes
/// GET (nothing to do) and the IFEQ/IFNE/IFDEQ/IFDNE conditions.
pub(super) struct SetOptions<'a> {
    nx: bool,
    xx: bool,
    keepttl: bool,
    expire: Option<i64>,
    cond: Option<Cond<'a>>,
}

impl<'a> SetOptions<'a> {
    fn parse(p: &mut Parse<'a>, set: bool) -> Result<SetOptions<'a>, ApplyError> {
        let mut o = SetOptions {
            nx: false,
            xx: false,
            keepttl: false,
            expire: None,
            cond: None,
        };
        while !p.is_done() {
            let word = p.next()?;
            let name = upper(word);
            let needs = |p: &mut Parse<'a>| p.next_or(format!("{name} needs a value"));
            let num = |p: &mut Parse<'a>| {
                let v = needs(p)?;
                super::error::arg_i64(p.name(), v)
            };
            match name.as_str() {
                "NX" => o.nx = true,
                "XX" => o.xx = true,
                "KEEPTTL" => o.keepttl = true,
                "EX" => o.expire = Some(now_ms().saturating_add(num(p)?.saturating_mul(1000))),
                "PX" => o.expire = Some(now_ms().saturating_add(num(p)?)),
                "EXAT" => o.expire = Some(num(p)?.saturating_mul(1000)),
                "PXAT" => o.expire = Some(num(p)?),
                "GET" if set => {}
                "IFEQ" | "IFNE" | "IFDEQ" | "IFDNE" if set => {
                    o.cond = Some(Cond::new(word, needs(p)?));
                }
                _ => return Err(p.error(format!("unknown option {name}"))),
            }
        }
        Ok(o)
    }
}

pub(super) fn parse<'a>(mut p: Parse<'a>) -> Result<Cmd<'a>, ApplyError> {
    let c = match p.name() {
        "SET" => {
            let (key, value) = (p.next()?, p.next()?);
            let opts = SetOptions::parse(&mut p, true)?;
            Op::Set { key, value, opts }
        }
        "INCR" => Op::IncrBy {
            key: p.next()?,
            by: 1,
        },
        "DECR" => Op::IncrBy {
            key: p.next()?,
            by: -1,
        },
        "INCRBY" => Op::IncrBy {
            key: p.next()?,
            by: p.next_i64()?,
        },
        // Redis 6.2 negates with wrap-around (DECRBY x -2^63 adds -2^63); 7.0+ refuses it,
        // so it never arrives from those.
        "DECRBY" => Op::IncrBy {
            key: p.next()?,
            by: p.next_i64()?.wrapping_neg(),
        },
        "APPEND" => Op::Append {
            key: p.next()?,
            value: p.next()?,
        },
        "DELIFEQ" => Op::DelEx {
            key: p.next()?,
            cond: Some(Cond::new(b"IFEQ", p.next()?)),
        },
        "DELEX" => {
            let key = p.next()?;
            let cond = match p.remaining() {
                0 => None,
                2 => Some(Cond::new(p.next()?, p.next()?)),
                _ => return Err(p.error("wrong number of arguments")),
            };
            Op::DelEx { key, cond }
        }
        "MSETEX" => {
            let n = usize::try_from(p.next_i64()?)
                .ok()
                .filter(|&n| n >= 1 && n.checked_mul(2).is_some_and(|m| m <= p.remaining()))
                .ok_or_else(|| p.error("bad numkeys"))?;
            let rest = p.rest();
            let (pairs, opts) = rest.split_at(n * 2);
            let mut o = Parse::new(p.name(), opts);
            let opts = SetOptions::parse(&mut o, false)?;
            Op::MSetEx { pairs, opts }
        }
        "SETRANGE" => {
            let key = p.next()?;
            let off = p.next_i64()?;
            if !(0..512 << 20).contains(&off) {
                return Err(p.error("offset out of range"));
            }
            Op::SetRange {
                key,
                offset: off as usize,
                value: p.next()?,
            }
        }
        "MSET" | "MSETNX" => Op::MSet {
            nx: p.name() == "MSETNX",
            pairs: p.pairs()?,
        },
        "SETNX" => Op::SetNx {
            key: p.next()?,
            value: p.next()?,
        },
        "SETEX" | "PSETEX" => {
            let key = p.next()?;
            let t = p.next_i64()?;
            let ms = if p.name() == "SETEX" {
                t.saturating_mul(1000)
            } else {
                t
            };
            Op::SetEx {
                key,
                at_ms: now_ms().saturating_add(ms),
                value: p.next()?,
            }
        }
        other => return Err(ApplyError::Unknown(other.to_string())),
    };
    p.finish()?;
    Ok(Cmd {
        name: p.name(),
        op: c,
    })
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        let (db, name) = (st.db, self.name);
        match self.op {
            Op::Set { key, value, opts } => set(ks, db, name, key, value, opts),
            Op::IncrBy { key, by } => incr_by(ks, db, name, key, by),
            Op::Append { key, value } => {
                let (h, mut cur) = get_string(ks, db, name, key)?.unwrap_or_default();
                cur.extend_from_slice(value);
                store(ks, db, key, &h, &Value::String(cur))
            }
            Op::DelEx { key, cond } => {
                if let Some(c) = &cond {
                    if !condition_holds(ks, db, name, key, c)? {
                        return Ok(());
                    }
                }
                ks.remove(db, key);
                Ok(())
            }
            Op::MSetEx { pairs, opts } => msetex(ks, db, pairs, opts),
            Op::SetRange { key, offset, value } => setrange(ks, db, name, key, offset, value),
            Op::MSet { pairs, nx } => {
                if nx && pairs.chunks_exact(2).any(|p| ks.entry(db, &p[0]).is_some()) {
                    return Ok(());
                }
                for p in pairs.chunks_exact(2) {
                    put_string(ks, db, &p[0], None, &p[1]);
                }
                Ok(())
            }
            Op::SetNx { key, value } => {
                if ks.entry(db, key).is_none() {
                    put_string(ks, db, key, None, value);
                }
                Ok(())
            }
            Op::SetEx { key, at_ms, value } => {
                put_string(ks, db, key, Some(at_ms), value);
                Ok(())
            }
        }
    }
}

/// Store a string under `key` with `expire_ms`, replacing whatever was there.
fn put_string(ks: &mut Keyspace, db: u64, key: &[u8], expire_ms: Option<i64>, value: &[u8]) {
    ks.put(db, Entry::Packed(Packed::string(key, expire_ms, value)));
}

/// SET: masters 7.0+ send absolute PXAT; 6.2 sends the relative forms, which a replica
/// makes absolute on arrival just as the server's replica does.
fn set(
    ks: &mut Keyspace,
    db: u64,
    name: &str,
    key: &[u8],
    value: &[u8],
    opts: SetOptions<'_>,
) -> Result<(), ApplyError> {
    let SetOptions {
        nx,
        xx,
        keepttl,
        mut expire,
        cond,
    } = opts;
    // Only NX, XX and KEEPTTL need what the key holds now.
    let old = if nx || xx || keepttl {
        ks.entry(db, key)
    } else {
        None
    };
    if (nx && old.is_some()) || (xx && old.is_none()) {
        return Ok(());
    }
    if let Some(c) = &cond {
        if !condition_holds(ks, db, name, key, c)? {
            // The master propagates a conditional SET only when it wrote.
            return Err(invalid(
                name,
                format!(
                    "{} condition false here, true on the master: our data differs",
                    c.label
                ),
            ));
        }
    }
    if keepttl {
        expire = old.as_ref().and_then(|e| e.expire_ms());
    }
    put_string(ks, db, key, expire, value);
    Ok(())
}

/// Whether a SET/DELEX condition holds on our data. IFDEQ/IFDNE compare a digest of the
/// value (XXH3) the master computed; the master propagates the command only when it held,
/// and our value equals the master's, so they are taken as holding.
fn condition_holds(
    ks: &Keyspace,
    db: u64,
    name: &str,
    key: &[u8],
    c: &Cond<'_>,
) -> Result<bool, ApplyError> {
    let cur = get_string(ks, db, name, key)?.map(|(_, v)| v);
    Ok(match c.kind {
        CondKind::IfEq => cur.as_deref() == Some(c.operand),
        CondKind::IfNe => cur.as_deref() != Some(c.operand),
        CondKind::IfDEq => cur.is_some(),
        CondKind::Holds => true,
    })
}

/// MSETEX (Redis 8.4+; masters rewrite EX/PX to PXAT): NX/XX hold for every key or nothing
/// is written.
fn msetex(
    ks: &mut Keyspace,
    db: u64,
    pairs: &[Vec<u8>],
    opts: SetOptions<'_>,
) -> Result<(), ApplyError> {
    let SetOptions {
        nx,
        xx,
        keepttl,
        expire,
        ..
    } = opts;
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
        put_string(ks, db, &p[0], ttl, &p[1]);
    }
    Ok(())
}

/// A string the server's `string2ll` accepts as an integer (canonical decimal, ≤ 20 chars).
pub fn parse_strict_i64(s: &[u8]) -> Option<i64> {
    crate::rdb::writer::packed::canonical_int(s)
}

/// INCR, DECR, INCRBY, DECRBY: the key keeps its TTL.
fn incr_by(ks: &mut Keyspace, db: u64, name: &str, key: &[u8], by: i64) -> Result<(), ApplyError> {
    let (h, cur) = get_string(ks, db, name, key)?.unwrap_or_default();
    let cur = if cur.is_empty() && ks.entry(db, key).is_none() {
        0
    } else {
        parse_strict_i64(&cur)
            .ok_or_else(|| invalid(name, "value is not an integer: our data differs"))?
    };
    let n = cur
        .checked_add(by)
        .ok_or_else(|| invalid(name, "overflow: our data differs"))?;
    store(ks, db, key, &h, &Value::String(n.to_string().into_bytes()))
}

/// SETRANGE key offset value: zero-padded; an empty value on a missing key creates nothing.
fn setrange(
    ks: &mut Keyspace,
    db: u64,
    name: &str,
    key: &[u8],
    off: usize,
    v: &[u8],
) -> Result<(), ApplyError> {
    let existing = get_string(ks, db, name, key)?;
    if v.is_empty() {
        return Ok(());
    }
    let (h, mut cur) = existing.unwrap_or_default();
    if cur.len() < off + v.len() {
        cur.resize(off + v.len(), 0);
    }
    cur[off..off + v.len()].copy_from_slice(v);
    store(ks, db, key, &h, &Value::String(cur))
}
