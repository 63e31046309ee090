//! Bitmap commands on string values: SETBIT, BITOP (Redis 8.2 adds DIFF, DIFF1, ANDOR and
//! ONE) and BITFIELD, all propagated as typed.
//!
//! Bits are numbered from the most significant bit of the first byte, as the server does;
//! a write past the end grows the string with zero bytes. SETBIT and BITFIELD keep the
//! key's TTL; BITOP replaces its destination (no TTL) or deletes it when every source is
//! empty. Offsets are bounded as the server bounds them (a string of at most 512 MiB), so
//! a hostile stream cannot make us allocate more than the master could hold.
//!
//! [`parse`] checks every argument (offsets and their bound, bit values, operations, the
//! BITFIELD types and subcommands) into a typed [`Cmd`]; its [`Apply`] reads the strings
//! and stores the result.

use super::error::{arg_i64, invalid, ApplyError};
use super::parse::{upper, Apply, Parse};
use super::state::StreamState;
use super::value_ops::{get_string, store};
use crate::keyspace::{Hints, Keyspace};
use crate::rdb::Value;

/// The largest string a bit command may grow: the server's default proto-max-bulk-len.
const MAX_STRING_BYTES: u64 = 512 * 1024 * 1024;

/// Whether bit `bit` fits in a string the server could hold.
fn check_bit(cmd: &str, bit: u64) -> Result<(), ApplyError> {
    if bit / 8 + 1 > MAX_STRING_BYTES {
        return Err(invalid(cmd, format!("bit offset {bit} beyond 512 MiB")));
    }
    Ok(())
}

/// Grow `s` with zero bytes so that bit `bit` exists.
fn grow_for_bit(cmd: &str, s: &mut Vec<u8>, bit: u64) -> Result<(), ApplyError> {
    check_bit(cmd, bit)?;
    let need = bit / 8 + 1;
    if (s.len() as u64) < need {
        s.resize(need as usize, 0);
    }
    Ok(())
}

fn bit_offset(cmd: &str, a: &[u8], hash_bits: Option<u32>) -> Result<u64, ApplyError> {
    let (mul, digits) = match (hash_bits, a.first()) {
        (Some(bits), Some(b'#')) => (u64::from(bits), &a[1..]),
        _ => (1, a),
    };
    let n =
        u64::try_from(arg_i64(cmd, digits)?).map_err(|_| invalid(cmd, "negative bit offset"))?;
    n.checked_mul(mul)
        .filter(|&o| o < MAX_STRING_BYTES * 8)
        .ok_or_else(|| invalid(cmd, "bit offset out of range"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BitOp {
    And,
    Or,
    Xor,
    Not,
    Diff,
    Diff1,
    AndOr,
    One,
}

/// How BITFIELD handles a value that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Overflow {
    Wrap,
    Sat,
    Fail,
}

fn get_bits(s: &[u8], offset: u64, bits: u32) -> u64 {
    let mut v = 0u64;
    for j in 0..u64::from(bits) {
        let o = offset + j;
        let b = s.get((o / 8) as usize).copied().unwrap_or(0);
        v = (v << 1) | u64::from((b >> (7 - (o & 7))) & 1);
    }
    v
}

fn set_bits(s: &mut [u8], offset: u64, bits: u32, value: u64) {
    for j in 0..u64::from(bits) {
        let o = offset + j;
        let bit = (value >> (u64::from(bits) - 1 - j)) & 1;
        let mask = 1u8 << (7 - (o & 7));
        if let Some(b) = s.get_mut((o / 8) as usize) {
            if bit == 1 {
                *b |= mask;
            } else {
                *b &= !mask;
            }
        }
    }
}

/// The server's unsigned overflow rule: Some(value to store) or None (FAIL).
fn unsigned_result(value: u64, incr: i64, bits: u32, ow: Overflow) -> Option<u64> {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = value.wrapping_neg() as i64;
    let wrap = || {
        let mask = if bits == 64 { 0 } else { u64::MAX << bits };
        value.wrapping_add(incr as u64) & !mask
    };
    if value > max || (incr > 0 && incr > maxincr) {
        match ow {
            Overflow::Wrap => Some(wrap()),
            Overflow::Sat => Some(max),
            Overflow::Fail => None,
        }
    } else if incr < 0 && incr < minincr {
        match ow {
            Overflow::Wrap => Some(wrap()),
            Overflow::Sat => Some(0),
            Overflow::Fail => None,
        }
    } else {
        Some(value.wrapping_add(incr as u64))
    }
}

/// The server's signed overflow rule.
fn signed_result(value: i64, incr: i64, bits: u32, ow: Overflow) -> Option<i64> {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrap = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1u64 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
        match ow {
            Overflow::Wrap => Some(wrap()),
            Overflow::Sat => Some(max),
            Overflow::Fail => None,
        }
    } else if value < min
        || (bits != 64 && incr < minincr)
        || (value < 0 && incr < 0 && incr < minincr)
    {
        match ow {
            Overflow::Wrap => Some(wrap()),
            Overflow::Sat => Some(min),
            Overflow::Fail => None,
        }
    } else {
        Some(value.wrapping_add(incr))
    }
}

/// A BITFIELD type: `iN` (1..=64) or `uN` (1..=63).
fn bit_type(cmd: &str, a: &[u8]) -> Result<(bool, u32), ApplyError> {
    let bad = || invalid(cmd, "invalid bitfield type");
    let (signed, digits) = match a.first() {
        Some(b'i' | b'I') => (true, &a[1..]),
        Some(b'u' | b'U') => (false, &a[1..]),
        _ => return Err(bad()),
    };
    let bits = u32::try_from(arg_i64(cmd, digits).map_err(|_| bad())?).map_err(|_| bad())?;
    if bits < 1 || (signed && bits > 64) || (!signed && bits > 63) {
        return Err(bad());
    }
    Ok((signed, bits))
}

/// One BITFIELD write (SET or INCRBY), with the OVERFLOW rule in force where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FieldOp {
    signed: bool,
    bits: u32,
    offset: u64,
    /// SET (else INCRBY).
    set: bool,
    value: i64,
    overflow: Overflow,
}

/// A command of this family, parsed.
pub(super) enum Cmd<'a> {
    SetBit {
        key: &'a [u8],
        bit: u64,
        on: bool,
    },
    /// BITOP op dest src… (the source count checked against the operation).
    BitOp {
        op: BitOp,
        dest: &'a [u8],
        srcs: &'a [Vec<u8>],
    },
    /// BITFIELD key …: its writes in order (GETs write nothing) and the farthest bit they
    /// name.
    BitField {
        key: &'a [u8],
        ops: Vec<FieldOp>,
        farthest: u64,
    },
}

const SETBIT: &str = "SETBIT";
const BITOP: &str = "BITOP";
const BITFIELD: &str = "BITFIELD";

pub(super) fn parse(mut p: Parse<'_>) -> Result<Cmd<'_>, ApplyError> {
    let name = p.name();
    Ok(match name {
        SETBIT => {
            let (key, offset, on) = (p.next()?, p.next()?, p.next()?);
            p.finish()?;
            let bit = bit_offset(name, offset, None)?;
            let on = match on {
                b"0" => false,
                b"1" => true,
                _ => return Err(p.error("bit value must be 0 or 1")),
            };
            Cmd::SetBit { key, bit, on }
        }
        BITOP => {
            let (op, dest) = (p.next()?, p.next()?);
            let op = match upper(op).as_str() {
                "AND" => BitOp::And,
                "OR" => BitOp::Or,
                "XOR" => BitOp::Xor,
                "NOT" => BitOp::Not,
                "DIFF" => BitOp::Diff,
                "DIFF1" => BitOp::Diff1,
                "ANDOR" => BitOp::AndOr,
                "ONE" => BitOp::One,
                o => return Err(p.error(format!("unknown operation {o}"))),
            };
            let srcs = p.rest();
            let needs_two = matches!(op, BitOp::Diff | BitOp::Diff1 | BitOp::AndOr);
            if srcs.is_empty()
                || (op == BitOp::Not && srcs.len() != 1)
                || (needs_two && srcs.len() < 2)
            {
                return Err(p.error("wrong number of source keys"));
            }
            Cmd::BitOp { op, dest, srcs }
        }
        BITFIELD => parse_bitfield(p)?,
        _ => return Err(ApplyError::Unknown(name.to_string())),
    })
}

/// BITFIELD key [GET t o] [SET t o v] [INCRBY t o n] [OVERFLOW WRAP|SAT|FAIL]…
fn parse_bitfield(mut p: Parse<'_>) -> Result<Cmd<'_>, ApplyError> {
    let name = p.name();
    let key = p.next()?;
    let mut ops = Vec::new();
    let mut ow = Overflow::Wrap;
    while !p.is_done() {
        let sub = upper(p.next()?);
        match sub.as_str() {
            "OVERFLOW" => {
                ow = match upper(p.next_or(format!("{sub} needs more arguments"))?).as_str() {
                    "WRAP" => Overflow::Wrap,
                    "SAT" => Overflow::Sat,
                    "FAIL" => Overflow::Fail,
                    o => return Err(p.error(format!("unknown OVERFLOW {o}"))),
                };
            }
            "GET" => {
                bit_type(name, p.next_or(format!("{sub} needs more arguments"))?)?;
                // The offset of a GET is not looked at (it writes nothing).
                if !p.is_done() {
                    p.next()?;
                }
            }
            "SET" | "INCRBY" => {
                let (signed, bits) =
                    bit_type(name, p.next_or(format!("{sub} needs more arguments"))?)?;
                let offset = bit_offset(
                    name,
                    p.next_or(format!("{sub} needs more arguments"))?,
                    Some(bits),
                )?;
                let value = arg_i64(name, p.next_or(format!("{sub} needs more arguments"))?)?;
                ops.push(FieldOp {
                    signed,
                    bits,
                    offset,
                    set: sub == "SET",
                    value,
                    overflow: ow,
                });
            }
            o => return Err(p.error(format!("unknown subcommand {o}"))),
        }
    }
    let farthest = ops
        .iter()
        .map(|o| o.offset + u64::from(o.bits) - 1)
        .max()
        .unwrap_or(0);
    if !ops.is_empty() {
        // The string grows to the farthest bit even when that write then fails.
        check_bit(name, farthest)?;
    }
    Ok(Cmd::BitField { key, ops, farthest })
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        let db = st.db;
        match self {
            Cmd::SetBit { key, bit, on } => setbit(ks, db, key, bit, on),
            Cmd::BitOp { op, dest, srcs } => bitop(ks, db, op, dest, srcs),
            Cmd::BitField { key, ops, farthest } => bitfield(ks, db, key, &ops, farthest),
        }
    }
}

/// SETBIT key offset 0|1.
fn setbit(ks: &mut Keyspace, db: u64, key: &[u8], bit: u64, on: bool) -> Result<(), ApplyError> {
    let (h, mut s) = get_string(ks, db, SETBIT, key)?.unwrap_or_default();
    grow_for_bit(SETBIT, &mut s, bit)?;
    let mask = 1u8 << (7 - (bit & 7));
    if let Some(byte) = s.get_mut((bit / 8) as usize) {
        if on {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
    store(ks, db, key, &h, &Value::String(s))
}

/// BITOP op dest src…: sources shorter than the longest read as zero bytes.
fn bitop(
    ks: &mut Keyspace,
    db: u64,
    op: BitOp,
    dest: &[u8],
    srcs: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let mut values = Vec::with_capacity(srcs.len());
    for k in srcs {
        values.push(
            get_string(ks, db, BITOP, k)?
                .map(|(_, s)| s)
                .unwrap_or_default(),
        );
    }
    let len = values.iter().map(Vec::len).max().unwrap_or(0);
    let Some((first_v, rest_v)) = values.split_first() else {
        return Ok(());
    };
    if len == 0 {
        ks.remove(db, dest);
        return Ok(());
    }
    let byte = |v: &Vec<u8>, j: usize| v.get(j).copied().unwrap_or(0);
    let mut out = vec![0u8; len];
    for (j, o) in out.iter_mut().enumerate() {
        let first = byte(first_v, j);
        let rest = rest_v.iter().map(|v| byte(v, j));
        *o = match op {
            BitOp::And => rest.fold(first, |a, b| a & b),
            BitOp::Or => rest.fold(first, |a, b| a | b),
            BitOp::Xor => rest.fold(first, |a, b| a ^ b),
            BitOp::Not => !first,
            BitOp::Diff => first & !rest.fold(0, |a, b| a | b),
            BitOp::Diff1 => !first & rest.fold(0, |a, b| a | b),
            BitOp::AndOr => first & rest.fold(0, |a, b| a | b),
            BitOp::One => {
                let (mut acc, mut common) = (first, 0u8);
                for b in rest {
                    common |= acc & b;
                    acc ^= b;
                    acc &= !common;
                }
                acc
            }
        };
    }
    store(ks, db, dest, &Hints::default(), &Value::String(out))
}

/// BITFIELD's writes, in order: the string first grows to the farthest bit any of them
/// names, even one that then fails.
fn bitfield(
    ks: &mut Keyspace,
    db: u64,
    key: &[u8],
    ops: &[FieldOp],
    farthest: u64,
) -> Result<(), ApplyError> {
    if ops.is_empty() {
        return Ok(());
    }
    let (h, mut s) = get_string(ks, db, BITFIELD, key)?.unwrap_or_default();
    grow_for_bit(BITFIELD, &mut s, farthest)?;
    for op in ops {
        let (bits, offset, v, ow) = (op.bits, op.offset, op.value, op.overflow);
        let old = get_bits(&s, offset, bits);
        let new = if op.signed {
            let old = if bits < 64 && old & (1u64 << (bits - 1)) != 0 {
                (old | (u64::MAX << bits)) as i64
            } else {
                old as i64
            };
            let r = if op.set {
                signed_result(v, 0, bits, ow)
            } else {
                signed_result(old, v, bits, ow)
            };
            r.map(|x| x as u64)
        } else if op.set {
            unsigned_result(v as u64, 0, bits, ow)
        } else {
            unsigned_result(old, v, bits, ow)
        };
        if let Some(n) = new {
            set_bits(&mut s, offset, bits, n);
        }
    }
    store(ks, db, key, &h, &Value::String(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_what_was_written() {
        let mut s = vec![0u8; 4];
        set_bits(&mut s, 3, 7, 0b1011001);
        assert_eq!(get_bits(&s, 3, 7), 0b1011001);
        assert_eq!(s[0], 0b0001_0110);
    }

    #[test]
    fn overflow_rules_match_the_server() {
        // u8 at 250 + 10: wrap to 4, saturate at 255, fail.
        assert_eq!(unsigned_result(250, 10, 8, Overflow::Wrap), Some(4));
        assert_eq!(unsigned_result(250, 10, 8, Overflow::Sat), Some(255));
        assert_eq!(unsigned_result(250, 10, 8, Overflow::Fail), None);
        assert_eq!(unsigned_result(3, -5, 8, Overflow::Sat), Some(0));
        // i8 at 120 + 10 wraps to -126; i8 SET 200 wraps to -56.
        assert_eq!(signed_result(120, 10, 8, Overflow::Wrap), Some(-126));
        assert_eq!(signed_result(200, 0, 8, Overflow::Wrap), Some(-56));
        assert_eq!(signed_result(-120, -10, 8, Overflow::Sat), Some(-128));
        assert_eq!(
            signed_result(i64::MAX, 1, 64, Overflow::Wrap),
            Some(i64::MIN)
        );
    }
}
