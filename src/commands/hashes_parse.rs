//! Hash commands parsed: the one place that reads a hash command's name and steps
//! through its arguments, making the typed [`Cmd`] that `hashes` applies. A leaf: it
//! changes nothing and knows nothing of how a hash is held.

use super::error::{arg_i64, ApplyError};
use super::parse::{upper, Parse};
use super::state::now_ms;

/// A hash command, parsed: its name (for messages) and what it does.
pub(crate) struct Cmd<'a> {
    pub(super) name: &'static str,
    pub(super) op: Op<'a>,
}

pub(crate) enum Op<'a> {
    /// HSET/HMSET key field value [field value ...].
    Set {
        key: &'a [u8],
        pairs: &'a [Vec<u8>],
    },
    SetNx {
        key: &'a [u8],
        field: &'a [u8],
        value: &'a [u8],
    },
    Del {
        key: &'a [u8],
        fields: &'a [Vec<u8>],
    },
    IncrBy {
        key: &'a [u8],
        field: &'a [u8],
        by: i64,
    },
    /// HPEXPIREAT (what 7.4+/Valkey 9 masters send) and HEXPIRE/HPEXPIRE/HEXPIREAT.
    Expire(FieldExpire<'a>),
    /// HPERSIST key FIELDS n f…
    Persist {
        key: &'a [u8],
        fields: &'a [Vec<u8>],
    },
    SetEx(HSetEx<'a>),
}

/// A field-expiry command with its time made absolute (ms).
pub(crate) struct FieldExpire<'a> {
    pub(super) key: &'a [u8],
    pub(super) when: u64,
    pub(super) cond: ExpireCond,
    pub(super) fields: &'a [Vec<u8>],
}

/// The per-field condition of a field-expiry command (its first word before FIELDS; a
/// word it does not name sets the time unconditionally, as before typed parsing).
#[derive(Clone, Copy)]
pub(crate) enum ExpireCond {
    Always,
    Nx,
    Xx,
    Gt,
    Lt,
}

/// HSETEX (Redis 8, Valkey 9): `key [NX|XX] [FNX|FXX] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]
/// FIELDS n f v …`.
pub(crate) struct HSetEx<'a> {
    pub(super) key: &'a [u8],
    pub(super) nx: bool,
    pub(super) xx: bool,
    pub(super) fnx: bool,
    pub(super) fxx: bool,
    pub(super) keepttl: bool,
    /// Absolute ms; `None`: no expiry (or KEEPTTL).
    pub(super) expire: Option<u64>,
    pub(super) pairs: &'a [Vec<u8>],
}

pub(crate) fn parse<'a>(mut p: Parse<'a>) -> Result<Cmd<'a>, ApplyError> {
    let name = p.name();
    let op = match name {
        "HSET" | "HMSET" => Op::Set {
            key: p.next()?,
            pairs: p.pairs()?,
        },
        "HSETNX" => Op::SetNx {
            key: p.next()?,
            field: p.next()?,
            value: p.next()?,
        },
        "HDEL" => Op::Del {
            key: p.next()?,
            fields: p.rest(),
        },
        "HINCRBY" => Op::IncrBy {
            key: p.next()?,
            field: p.next()?,
            by: p.next_i64()?,
        },
        "HPEXPIREAT" | "HPEXPIRE" | "HEXPIREAT" | "HEXPIRE" => {
            let key = p.next()?;
            let n = p.next_i64()?;
            let when = match name {
                "HPEXPIREAT" => n,
                "HEXPIREAT" => n.saturating_mul(1000),
                "HPEXPIRE" => now_ms().saturating_add(n),
                _ => now_ms().saturating_add(n.saturating_mul(1000)),
            };
            let rest = p.rest();
            let cond = match rest.first() {
                Some(w) if w.eq_ignore_ascii_case(b"NX") => ExpireCond::Nx,
                Some(w) if w.eq_ignore_ascii_case(b"XX") => ExpireCond::Xx,
                Some(w) if w.eq_ignore_ascii_case(b"GT") => ExpireCond::Gt,
                Some(w) if w.eq_ignore_ascii_case(b"LT") => ExpireCond::Lt,
                _ => ExpireCond::Always,
            };
            let fields = fields_arg(name, rest)?;
            let when = u64::try_from(when).map_err(|_| p.error("negative time"))?;
            Op::Expire(FieldExpire {
                key,
                when,
                cond,
                fields,
            })
        }
        "HPERSIST" => {
            let key = p.next()?;
            Op::Persist {
                key,
                fields: fields_arg(name, p.rest())?,
            }
        }
        "HSETEX" => Op::SetEx(hsetex(&mut p)?),
        other => return Err(ApplyError::Unknown(other.to_string())),
    };
    p.finish()?;
    Ok(Cmd { name, op })
}

/// The fields of the `FIELDS n f1 … fn` tail of the field-expiry commands (what follows
/// them is not read).
fn fields_arg<'a>(cmd: &str, args: &'a [Vec<u8>]) -> Result<&'a [Vec<u8>], ApplyError> {
    Ok(fields_tail(cmd, args, 1, "fewer fields than announced")?.1)
}

/// Where `FIELDS n` stands in `args`, and the `n × per` arguments after it.
fn fields_tail<'a>(
    cmd: &str,
    args: &'a [Vec<u8>],
    per: usize,
    short: &str,
) -> Result<(usize, &'a [Vec<u8>]), ApplyError> {
    let err = |m: &str| super::error::invalid(cmd, m);
    let i = args
        .iter()
        .position(|a| a.eq_ignore_ascii_case(b"FIELDS"))
        .ok_or_else(|| err("no FIELDS"))?;
    let n = arg_i64(
        cmd,
        args.get(i + 1).ok_or_else(|| err("FIELDS needs a count"))?,
    )?;
    let n = usize::try_from(n).map_err(|_| err("negative field count"))?;
    let start = i + 2;
    let got = n
        .checked_mul(per)
        .and_then(|m| args.get(start..start.checked_add(m)?))
        .ok_or_else(|| err(short))?;
    Ok((i, got))
}

fn hsetex<'a>(p: &mut Parse<'a>) -> Result<HSetEx<'a>, ApplyError> {
    let cmd = p.name();
    let key = p.next()?;
    let rest = p.rest();
    let err = |m: String| super::error::invalid(cmd, m);
    let (i, pairs) = fields_tail(cmd, rest, 2, "fewer field/value pairs than announced")?;
    let mut x = HSetEx {
        key,
        nx: false,
        xx: false,
        fnx: false,
        fxx: false,
        keepttl: false,
        expire: None,
        pairs,
    };
    let mut expire: Option<i64> = None;
    let mut o = Parse::new(cmd, &rest[..i]);
    while !o.is_done() {
        let word = upper(o.next()?);
        let mut num = || arg_i64(cmd, o.next_or(format!("{word} needs a value"))?);
        match word.as_str() {
            "NX" => x.nx = true,
            "XX" => x.xx = true,
            "FNX" => x.fnx = true,
            "FXX" => x.fxx = true,
            "KEEPTTL" => x.keepttl = true,
            "EX" => expire = Some(now_ms().saturating_add(num()?.saturating_mul(1000))),
            "PX" => expire = Some(now_ms().saturating_add(num()?)),
            "EXAT" => expire = Some(num()?.saturating_mul(1000)),
            "PXAT" => expire = Some(num()?),
            _ => return Err(err(format!("unknown option {word}"))),
        }
    }
    x.expire = expire
        .map(|e| u64::try_from(e).map_err(|_| err("negative time".into())))
        .transpose()?;
    Ok(x)
}
