//! Bitmap commands on string values: SETBIT, BITOP (Redis 8.2 adds DIFF, DIFF1, ANDOR and
//! ONE) and BITFIELD, all propagated as typed.
//!
//! Bits are numbered from the most significant bit of the first byte, as the server does;
//! a write past the end grows the string with zero bytes. SETBIT and BITFIELD keep the
//! key's TTL; BITOP replaces its destination (no TTL) or deletes it when every source is
//! empty. Offsets are bounded as the server bounds them (a string of at most 512 MiB), so
//! a hostile stream cannot make us allocate more than the master could hold.

use super::error::{arg_i64, invalid, ApplyError};
use super::parse::{Apply, Parse};
use super::state::StreamState;
use super::value_ops::{get_string, store};
use crate::keyspace::{Hints, Keyspace};
use crate::rdb::Value;

/// The largest string a bit command may grow: the server's default proto-max-bulk-len.
const MAX_STRING_BYTES: u64 = 512 * 1024 * 1024;

/// Grow `s` with zero bytes so that bit `bit` exists.
fn grow_for_bit(cmd: &str, s: &mut Vec<u8>, bit: u64) -> Result<(), ApplyError> {
    let need = bit / 8 + 1;
    if need > MAX_STRING_BYTES {
        return Err(invalid(cmd, format!("bit offset {bit} beyond 512 MiB")));
    }
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

/// SETBIT key offset 0|1.
pub fn setbit(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, offset, on] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let bit = bit_offset(cmd, offset, None)?;
    let on = match on.as_slice() {
        b"0" => false,
        b"1" => true,
        _ => return Err(invalid(cmd, "bit value must be 0 or 1")),
    };
    let (h, mut s) = get_string(ks, db, cmd, key)?.unwrap_or_default();
    grow_for_bit(cmd, &mut s, bit)?;
    let mask = 1u8 << (7 - (bit & 7));
    let byte = &mut s[(bit / 8) as usize];
    if on {
        *byte |= mask;
    } else {
        *byte &= !mask;
    }
    store(ks, db, key, &h, &Value::String(s))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
    Diff,
    Diff1,
    AndOr,
    One,
}

/// BITOP op dest src…: sources shorter than the longest read as zero bytes.
pub fn bitop(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [op, dest, srcs @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let op = match String::from_utf8_lossy(op).to_ascii_uppercase().as_str() {
        "AND" => BitOp::And,
        "OR" => BitOp::Or,
        "XOR" => BitOp::Xor,
        "NOT" => BitOp::Not,
        "DIFF" => BitOp::Diff,
        "DIFF1" => BitOp::Diff1,
        "ANDOR" => BitOp::AndOr,
        "ONE" => BitOp::One,
        o => return Err(invalid(cmd, format!("unknown operation {o}"))),
    };
    let needs_two = matches!(op, BitOp::Diff | BitOp::Diff1 | BitOp::AndOr);
    if srcs.is_empty() || (op == BitOp::Not && srcs.len() != 1) || (needs_two && srcs.len() < 2) {
        return Err(invalid(cmd, "wrong number of source keys"));
    }
    let mut values = Vec::with_capacity(srcs.len());
    for k in srcs {
        values.push(
            get_string(ks, db, cmd, k)?
                .map(|(_, s)| s)
                .unwrap_or_default(),
        );
    }
    let len = values.iter().map(Vec::len).max().unwrap_or(0);
    if len == 0 {
        ks.remove(db, dest);
        return Ok(());
    }
    let byte = |v: &Vec<u8>, j: usize| v.get(j).copied().unwrap_or(0);
    let mut out = vec![0u8; len];
    for (j, o) in out.iter_mut().enumerate() {
        let first = byte(&values[0], j);
        let rest = values[1..].iter().map(|v| byte(v, j));
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

/// How BITFIELD handles a value that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overflow {
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

/// One BITFIELD write: (signed, bits, offset, is SET, value, overflow).
type FieldOp = (bool, u32, u64, bool, i64, Overflow);

/// BITFIELD key [GET t o] [SET t o v] [INCRBY t o n] [OVERFLOW WRAP|SAT|FAIL]…: the string
/// first grows to the farthest bit any SET/INCRBY names, even one that then fails.
pub fn bitfield(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, rest @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let mut ops: Vec<FieldOp> = Vec::new();
    let mut ow = Overflow::Wrap;
    let mut i = 0;
    while i < rest.len() {
        let sub = String::from_utf8_lossy(&rest[i]).to_ascii_uppercase();
        let arg = |k: usize| {
            rest.get(i + k)
                .ok_or_else(|| invalid(cmd, format!("{sub} needs more arguments")))
        };
        match sub.as_str() {
            "OVERFLOW" => {
                ow = match String::from_utf8_lossy(arg(1)?)
                    .to_ascii_uppercase()
                    .as_str()
                {
                    "WRAP" => Overflow::Wrap,
                    "SAT" => Overflow::Sat,
                    "FAIL" => Overflow::Fail,
                    o => return Err(invalid(cmd, format!("unknown OVERFLOW {o}"))),
                };
                i += 2;
            }
            "GET" => {
                bit_type(cmd, arg(1)?)?;
                i += 3;
            }
            "SET" | "INCRBY" => {
                let (signed, bits) = bit_type(cmd, arg(1)?)?;
                let offset = bit_offset(cmd, arg(2)?, Some(bits))?;
                let v = arg_i64(cmd, arg(3)?)?;
                ops.push((signed, bits, offset, sub == "SET", v, ow));
                i += 4;
            }
            o => return Err(invalid(cmd, format!("unknown subcommand {o}"))),
        }
    }
    if ops.is_empty() {
        return Ok(());
    }
    let (h, mut s) = get_string(ks, db, cmd, key)?.unwrap_or_default();
    let farthest = ops
        .iter()
        .map(|&(_, bits, off, ..)| off + u64::from(bits) - 1)
        .max()
        .unwrap_or(0);
    grow_for_bit(cmd, &mut s, farthest)?;
    for (signed, bits, offset, is_set, v, ow) in ops {
        let old = get_bits(&s, offset, bits);
        let new = if signed {
            let old = if bits < 64 && old & (1u64 << (bits - 1)) != 0 {
                (old | (u64::MAX << bits)) as i64
            } else {
                old as i64
            };
            let r = if is_set {
                signed_result(v, 0, bits, ow)
            } else {
                signed_result(old, v, bits, ow)
            };
            r.map(|x| x as u64)
        } else if is_set {
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
            "SETBIT" => setbit(ks, st.db, name, args),
            "BITOP" => bitop(ks, st.db, name, args),
            "BITFIELD" => bitfield(ks, st.db, name, args),
            _ => Err(ApplyError::Unknown(name.to_string())),
        }
    }
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
