//! The sparse encoding: a run-length list of opcodes after the header.
//!
//! * ZERO  `00xxxxxx`           : `x + 1` (1..=64) registers at 0.
//! * XZERO `01xxxxxx yyyyyyyy`  : `(x << 8 | y) + 1` (1..=16384) registers at 0.
//! * VAL   `1vvvvvxx`           : `x + 1` (1..=4) registers at `v + 1` (1..=32).
//!
//! The servers edit this list in place, one register at a time, and the bytes they end with
//! depend on that history (an edit splits one opcode and then merges VALs only in a short
//! window), not only on the register values. So [`set`] replays their edit step for step
//! rather than re-encoding the registers: re-encoding would give a different, "better" string
//! and break byte equality.

use super::{dense, HllError, DENSE, DENSE_LEN, ENCODING_AT, HEADER_LEN, REGISTERS};

const VAL_MAX_VALUE: u8 = 32;
const VAL_MAX_LEN: usize = 4;
const ZERO_MAX_LEN: usize = 64;

fn is_zero(b: u8) -> bool {
    b & 0xc0 == 0
}

fn is_xzero(b: u8) -> bool {
    b & 0xc0 == 0x40
}

fn is_val(b: u8) -> bool {
    b & 0x80 != 0
}

fn val_value(b: u8) -> u8 {
    ((b >> 2) & 0x1f) + 1
}

fn val_len(b: u8) -> usize {
    usize::from(b & 0x03) + 1
}

/// A VAL opcode; `value` in 1..=32 and `len` in 1..=4 (callers guarantee both).
fn val_op(value: u8, len: usize) -> u8 {
    0x80 | ((value - 1) << 2) | (len as u8 - 1)
}

/// A ZERO (up to 64 registers) or XZERO (up to 16384) run, appended to `out`.
fn push_zeros(out: &mut Vec<u8>, len: usize) {
    if len > ZERO_MAX_LEN {
        let l = len - 1;
        out.push(0x40 | ((l >> 8) as u8 & 0x3f));
        out.push((l & 0xff) as u8);
    } else {
        out.push((len - 1) as u8);
    }
}

/// One decoded opcode.
#[derive(Clone, Copy)]
enum Op {
    /// A ZERO or XZERO: `span` registers at 0.
    Zeros { span: usize, xzero: bool },
    /// A VAL: `span` registers at `value`.
    Val { span: usize, value: u8 },
}

impl Op {
    fn span(self) -> usize {
        match self {
            Op::Zeros { span, .. } | Op::Val { span, .. } => span,
        }
    }

    fn byte_len(self) -> usize {
        match self {
            Op::Zeros { xzero: true, .. } => 2,
            _ => 1,
        }
    }
}

/// Decode the opcode at `pos` (which must be `< value.len()`).
///
/// An XZERO whose second byte would lie past the end is refused: the server reads the byte
/// after its string there (normally the NUL terminator, but an earlier edit can leave another
/// byte in it), so what it does is not a function of the value we hold.
fn op_at(value: &[u8], pos: usize) -> Result<Op, HllError> {
    let b = value[pos];
    if is_zero(b) {
        Ok(Op::Zeros {
            span: usize::from(b & 0x3f) + 1,
            xzero: false,
        })
    } else if is_xzero(b) {
        let lo = *value.get(pos + 1).ok_or(HllError::CutOff)?;
        Ok(Op::Zeros {
            span: ((usize::from(b & 0x3f) << 8) | usize::from(lo)) + 1,
            xzero: true,
        })
    } else {
        Ok(Op::Val {
            span: val_len(b),
            value: val_value(b),
        })
    }
}

/// What a walk over all the runs does with a VAL that would pass the last register.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overshoot {
    /// Refuse the value (every version, when counting).
    Refuse,
    /// Stop there and ignore the rest; the value is good if exactly 16384 registers were
    /// covered before it. Conversion to dense and merging did this in every release before the
    /// CVE-2025-32023 bounds checks (Redis 6.2.19, 7.2.10, 7.4.5, 8.0.3; Valkey 8.0.4, 8.1.3),
    /// which refuse instead. We accept like the older releases: a newer master refuses the
    /// command and does not propagate it, so accepting costs nothing there, while refusing
    /// would break a replica of an older master.
    StopAtVal,
}

/// Visit every run `(first register, span, value)` of a sparse value, checking, as the
/// servers do before they trust the registers (conversion, merge, count), that the runs cover
/// exactly 16384 registers. ZERO runs are not visited.
pub(crate) fn for_each_run(
    value: &[u8],
    overshoot: Overshoot,
    mut f: impl FnMut(usize, usize, u8),
) -> Result<(), HllError> {
    let mut pos = HEADER_LEN;
    let mut idx = 0usize;
    while pos < value.len() {
        let op = match op_at(value, pos) {
            Ok(op) => op,
            // A cut-off XZERO covers at least (high bits << 8) + 1 registers whatever byte
            // the server reads after it; if even that is too many, it is an error on every
            // version, not an unknowable outcome.
            Err(HllError::CutOff)
                if idx + (usize::from(value[pos] & 0x3f) << 8) + 1 > REGISTERS =>
            {
                return Err(HllError::Corrupt(
                    "sparse runs cover more than 16384 registers",
                ));
            }
            Err(e) => return Err(e),
        };
        let span = op.span();
        if idx + span > REGISTERS {
            if overshoot == Overshoot::StopAtVal && matches!(op, Op::Val { .. }) {
                break;
            }
            return Err(HllError::Corrupt(
                "sparse runs cover more than 16384 registers",
            ));
        }
        if let Op::Val { value: v, .. } = op {
            f(idx, span, v);
        }
        idx += span;
        pos += op.byte_len();
    }
    if idx != REGISTERS {
        return Err(HllError::Corrupt(
            "sparse runs do not cover exactly 16384 registers",
        ));
    }
    Ok(())
}

/// The dense value a sparse one converts to: header copied (magic, the three unused bytes and
/// the cached cardinality, valid or not), encoding byte set to dense, registers filled in.
pub(crate) fn to_dense(value: &[u8]) -> Result<Vec<u8>, HllError> {
    let mut out = vec![0u8; DENSE_LEN];
    out[..HEADER_LEN].copy_from_slice(&value[..HEADER_LEN]);
    out[ENCODING_AT] = DENSE;
    let body = &mut out[HEADER_LEN..];
    for_each_run(value, Overshoot::StopAtVal, |first, span, v| {
        for i in first..first + span {
            dense::set(body, i, v);
        }
    })?;
    Ok(out)
}

/// Raise register `index` to `count` in the sparse value `value`, exactly as the servers'
/// sparse set does, promoting `value` to dense when `count` does not fit a VAL (> 32) or when
/// the edit would grow the string past `max_bytes` (header included). True if it changed.
pub(crate) fn set(
    value: &mut Vec<u8>,
    index: usize,
    count: u8,
    max_bytes: usize,
) -> Result<bool, HllError> {
    if count > VAL_MAX_VALUE {
        return promote(value, index, count);
    }

    // Find the opcode covering `index`, remembering the one before it (the merge pass starts
    // there). This walk does not check the total: a value whose runs overshoot 16384 is still
    // edited, as on the server, as long as `index` is covered.
    let end = value.len();
    let mut pos = HEADER_LEN;
    let mut first = 0usize;
    let mut prev: Option<usize> = None;
    let mut found: Option<Op> = None;
    while pos < end {
        let op = op_at(value, pos)?;
        if index < first + op.span() {
            found = Some(op);
            break;
        }
        prev = Some(pos);
        pos += op.byte_len();
        first += op.span();
    }
    let Some(op) = found else {
        return Err(HllError::Corrupt("register not covered by the sparse runs"));
    };

    match op {
        // Already high enough: nothing to do, and nothing is written.
        Op::Val { value: old, .. } if old >= count => return Ok(false),
        // A single register in a VAL or ZERO opcode: overwrite the byte in place.
        Op::Val { span: 1, .. }
        | Op::Zeros {
            span: 1,
            xzero: false,
        } => {
            value[pos] = val_op(count, 1);
        }
        _ => {
            // Split the opcode into (left part) VAL(count) (right part).
            let span = op.span();
            let last = first + span - 1;
            let mut seq = Vec::with_capacity(5);
            match op {
                Op::Zeros { .. } => {
                    if index != first {
                        push_zeros(&mut seq, index - first);
                    }
                    seq.push(val_op(count, 1));
                    if index != last {
                        push_zeros(&mut seq, last - index);
                    }
                }
                Op::Val { value: cur, .. } => {
                    if index != first {
                        seq.push(val_op(cur, index - first));
                    }
                    seq.push(val_op(count, 1));
                    if index != last {
                        seq.push(val_op(cur, last - index));
                    }
                }
            }
            let old_len = op.byte_len();
            // Only growth is limited; an edit that keeps or shrinks the length never promotes.
            if seq.len() > old_len && end + (seq.len() - old_len) > max_bytes {
                return promote(value, index, count);
            }
            value.splice(pos..pos + old_len, seq);
        }
    }

    merge_vals(value, prev.unwrap_or(HEADER_LEN));
    Ok(true)
}

/// The servers' tidy-up after an edit: starting at the opcode before the edited one, look at
/// no more than five opcodes (every look counts, merges included) and fuse two adjacent VALs of
/// the same value whose lengths still fit one VAL.
fn merge_vals(value: &mut Vec<u8>, start: usize) {
    let mut p = start;
    let mut looks_left = 5u32;
    while p < value.len() && looks_left > 0 {
        looks_left -= 1;
        let b = value[p];
        if is_xzero(b) {
            p += 2;
            continue;
        }
        if is_zero(b) {
            p += 1;
            continue;
        }
        if let Some(&next) = value.get(p + 1) {
            if is_val(next) && val_value(b) == val_value(next) {
                let len = val_len(b) + val_len(next);
                if len <= VAL_MAX_LEN {
                    value[p + 1] = val_op(val_value(b), len);
                    value.remove(p);
                    // Stay on the fused opcode: it may fuse with the one after it too.
                    continue;
                }
            }
        }
        p += 1;
    }
}

/// Convert to dense and set the register there. The conversion checks the whole sparse value;
/// a corrupt one is an error even though the walk in [`set`] may not have noticed.
fn promote(value: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, HllError> {
    let mut dense_value = to_dense(value)?;
    // The register is below `count` here (a sparse register is at most 32, and the walk found
    // it lower), so this always changes it, as the server asserts.
    let changed = dense::raise(&mut dense_value, index, count);
    *value = dense_value;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hll::{new_sparse, DEFAULT_SPARSE_MAX_BYTES};

    fn body(v: &[u8]) -> &[u8] {
        &v[HEADER_LEN..]
    }

    #[test]
    fn split_of_the_initial_xzero() {
        let mut v = new_sparse();
        assert!(set(&mut v, 1000, 2, DEFAULT_SPARSE_MAX_BYTES).unwrap());
        // XZERO:1000 VAL:2,1 XZERO:15383
        assert_eq!(body(&v), [0x43, 0xe7, 0x84, 0x7c, 0x16]);
        assert!(!set(&mut v, 1000, 2, DEFAULT_SPARSE_MAX_BYTES).unwrap());
        assert!(set(&mut v, 1001, 2, DEFAULT_SPARSE_MAX_BYTES).unwrap());
        // XZERO:1000 VAL:2,2 XZERO:15382 (split of the XZERO, then the two VALs fuse)
        assert_eq!(body(&v), [0x43, 0xe7, 0x85, 0x7c, 0x15]);
    }

    #[test]
    fn growth_past_the_limit_promotes() {
        let mut v = new_sparse();
        assert!(set(&mut v, 5, 3, 20).unwrap());
        assert_eq!(v.len(), 20); // 16 + ZERO VAL XZERO
        assert_eq!(v[ENCODING_AT], 1);
        assert!(set(&mut v, 9000, 3, 20).unwrap());
        assert_eq!(v.len(), DENSE_LEN);
        assert_eq!(v[ENCODING_AT], DENSE);
        let b = &v[HEADER_LEN..];
        assert_eq!((dense::get(b, 5), dense::get(b, 9000)), (3, 3));
    }

    #[test]
    fn a_trailing_val_past_the_end_is_ignored_by_conversion() {
        let mut v = new_sparse();
        v.push(val_op(5, 1));
        let dense = to_dense(&v).unwrap();
        assert!(dense[HEADER_LEN..].iter().all(|&b| b == 0));
        let mut refuse = 0;
        let r = for_each_run(&v, Overshoot::Refuse, |_, _, _| refuse += 1);
        assert!(r.is_err());
    }

    #[test]
    fn overlong_runs_are_corrupt_for_conversion() {
        let mut v = new_sparse();
        v.push(0x00); // one ZERO too many
        assert!(to_dense(&v).is_err());
        v.truncate(HEADER_LEN + 1); // a lone XZERO first byte
        assert_eq!(to_dense(&v), Err(HllError::CutOff));
    }
}
