//! HyperLogLog values, byte for byte as Redis and Valkey store them.
//!
//! A HyperLogLog is an ordinary string value. PFADD, PFMERGE, a single-key PFCOUNT (which
//! caches its estimate in the value and is then propagated to replicas) and PFDEBUG
//! TODENSE/GETREG (which convert a sparse value to dense and are then propagated) rewrite that
//! string; a replica that applies the stream must produce the very same bytes. This module
//! owns that computation: pure functions from the old value (and the command's arguments) to
//! the new value. The caller owns the keyspace, key lookup, types and expiry.
//!
//! It must never:
//! * produce bytes that differ from the server's: no canonical re-encoding, no "better"
//!   sparse string, no different rounding of the cached estimate;
//! * panic or allocate from a length it read in a value: a value that is not a HyperLogLog,
//!   or is corrupt, gives an [`HllError`] (the server would refuse the command; for a replica
//!   it means our copy differs from the master's, and the caller resynchronises).
//!
//! Layout (both encodings): `"HYLL"`, an encoding byte (0 dense, 1 sparse), three unused bytes
//! (copied, never checked), and the cached cardinality as 8 little-endian bytes whose top bit
//! means "stale". Dense is exactly 16 + 12288 bytes: 16384 registers of 6 bits. Sparse is the
//! opcode list described in `sparse.rs`, promoted to dense when an edit would need a register
//! above 32 or would grow the string past `hll-sparse-max-bytes` (default 3000).
//!
//! Server versions: verified byte for byte against Redis 6.2, 7.0, 7.2, 7.4, 8.2, 8.6, 8.10
//! and Valkey 8.0, 8.1, 9.0, 9.1 (tests/hll.rs). Their sources differ in speed only (SIMD
//! dense merges since Redis 8.0 / Valkey 8.1 write the same registers) except for one thing:
//! the CVE-2025-32023 fixes made conversion and merging refuse a sparse value that goes on
//! with a VAL past register 16384, which older releases ignore. We accept it, as the older
//! releases do (see `sparse::Overshoot`): a master that refuses never propagates the command.
//!
//! Errors are for values the master would refuse too (so a command reaching us with one means
//! our copy differs), with one exception the caller should know: [`HllError::CutOff`], a
//! sparse value whose last byte starts a two-byte opcode. The server then reads the byte after
//! its string, which is not part of the value; we cannot know the outcome, so we refuse.
//! Only a hand-made value (SET/RESTORE of crafted bytes) can be like that.

mod dense;
mod estimate;
mod hash;
mod sparse;

/// Index bits of the hash: 2^14 registers.
const P: u32 = 14;
/// Number of registers.
pub const REGISTERS: usize = 1 << P;
/// Header bytes before the registers, in both encodings.
pub const HEADER_LEN: usize = 16;
/// Length of every dense value: header + 16384 × 6 bits.
pub const DENSE_LEN: usize = HEADER_LEN + REGISTERS * 6 / 8;
/// The servers' default `hll-sparse-max-bytes`.
pub const DEFAULT_SPARSE_MAX_BYTES: usize = 3000;

const MAGIC: &[u8; 4] = b"HYLL";
const ENCODING_AT: usize = 4;
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
/// Byte holding the cache's "stale" bit (the top bit of the little-endian cardinality).
const STALE_AT: usize = 15;
const STALE_BIT: u8 = 0x80;

/// Why a value cannot be used as a HyperLogLog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HllError {
    /// Shorter than the header.
    #[error("not a HyperLogLog: {len} bytes, shorter than the 16-byte header")]
    TooShort { len: usize },
    /// The first four bytes are not `HYLL`.
    #[error("not a HyperLogLog: the value does not start with \"HYLL\"")]
    BadMagic,
    /// Encoding byte other than 0 (dense) or 1 (sparse).
    #[error("not a HyperLogLog: unknown encoding byte {0}")]
    BadEncoding(u8),
    /// A dense value of the wrong length.
    #[error("not a HyperLogLog: dense value of {len} bytes, expected {DENSE_LEN}")]
    BadDenseLength { len: usize },
    /// A sparse value whose opcodes do not describe 16384 registers where the server checks.
    #[error("corrupt HyperLogLog: {0}")]
    Corrupt(&'static str),
    /// A sparse value ending in the first byte of a two-byte XZERO opcode, read by the
    /// operation: the server would read the byte after its string, which we do not have.
    #[error("corrupt HyperLogLog: XZERO opcode cut off by the end of the value")]
    CutOff,
}

impl HllError {
    /// The error code the server replies with for this value: `WRONGTYPE` (its "not a valid
    /// HyperLogLog string value") or `INVALIDOBJ` ("Corrupted HLL object detected"). `None`
    /// for [`HllError::CutOff`], where the server's outcome depends on bytes we do not have.
    pub fn server_error_code(&self) -> Option<&'static str> {
        match self {
            HllError::TooShort { .. }
            | HllError::BadMagic
            | HllError::BadEncoding(_)
            | HllError::BadDenseLength { .. } => Some("WRONGTYPE"),
            HllError::Corrupt(_) => Some("INVALIDOBJ"),
            HllError::CutOff => None,
        }
    }
}

/// The checks every HyperLogLog command makes before touching a value: length, magic,
/// encoding, and the exact dense length. Nothing else (the unused bytes may hold anything; a
/// sparse value is only checked by the operations that walk it).
fn check_header(value: &[u8]) -> Result<(), HllError> {
    if value.len() < HEADER_LEN {
        return Err(HllError::TooShort { len: value.len() });
    }
    if &value[..4] != MAGIC {
        return Err(HllError::BadMagic);
    }
    match value[ENCODING_AT] {
        DENSE if value.len() != DENSE_LEN => Err(HllError::BadDenseLength { len: value.len() }),
        DENSE | SPARSE => Ok(()),
        other => Err(HllError::BadEncoding(other)),
    }
}

/// The value PFADD and PFMERGE create for a missing key: sparse, all registers in one XZERO,
/// cached cardinality 0 and valid (the commands then mark it stale).
fn new_sparse() -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + 2);
    v.extend_from_slice(MAGIC);
    v.push(SPARSE);
    v.extend_from_slice(&[0; 11]);
    // XZERO covering all 16384 registers: length - 1 = 0x3fff.
    v.extend_from_slice(&[0x7f, 0xff]);
    v
}

fn is_dense(value: &[u8]) -> bool {
    value[ENCODING_AT] == DENSE
}

fn mark_stale(value: &mut [u8]) {
    value[STALE_AT] |= STALE_BIT;
}

/// Raise one register, in whichever encoding the value is now (a sparse set may promote).
fn raise(
    value: &mut Vec<u8>,
    index: usize,
    count: u8,
    sparse_max_bytes: usize,
) -> Result<bool, HllError> {
    if is_dense(value) {
        Ok(dense::raise(value, index, count))
    } else {
        sparse::set(value, index, count, sparse_max_bytes)
    }
}

/// Fold a value's registers into `max` (one byte per register), as PFMERGE and a multi-key
/// PFCOUNT do. Checks the header and, for sparse, that the runs cover exactly 16384 registers.
fn merge_into(max: &mut [u8], value: &[u8]) -> Result<(), HllError> {
    check_header(value)?;
    if is_dense(value) {
        let body = &value[HEADER_LEN..];
        for (i, m) in max.iter_mut().enumerate() {
            *m = (*m).max(dense::get(body, i));
        }
        Ok(())
    } else {
        sparse::for_each_run(value, sparse::Overshoot::StopAtVal, |first, span, v| {
            for m in &mut max[first..first + span] {
                *m = (*m).max(v);
            }
        })
    }
}

/// `PFADD key element...`: the value stored afterwards and whether the command changed it
/// (PFADD replied 1: a register rose or the key was created). When nothing changed the input
/// comes back as is; the server neither rewrites nor propagates the command then.
///
/// `current` is the key's value (`None` if the key does not exist); `sparse_max_bytes` is the
/// master's `hll-sparse-max-bytes`.
pub fn pfadd(
    current: Option<&[u8]>,
    elements: &[&[u8]],
    sparse_max_bytes: usize,
) -> Result<(Vec<u8>, bool), HllError> {
    let (mut value, mut changed) = match current {
        None => (new_sparse(), true),
        Some(v) => {
            check_header(v)?;
            (v.to_vec(), false)
        }
    };
    for element in elements {
        let (index, count) = hash::pattern(element);
        // Elements apply one at a time: a sparse value may promote to dense midway, and the
        // rest then go to the dense registers, as on the server.
        changed |= raise(&mut value, index, count, sparse_max_bytes)?;
    }
    if changed {
        mark_stale(&mut value);
    }
    Ok((value, changed))
}

/// `PFMERGE dest source...`: the value stored at `dest` afterwards. `dest` is the destination's
/// current value (`None` if missing), and like on the server it is also merged in. `sources`
/// are the values of the source keys that exist (missing ones count as empty: leave them out).
///
/// The destination comes out dense if any input (destination included) is dense; otherwise
/// the registers are raised one by one, lowest index first, in the destination's sparse
/// string, which promotes to dense if it outgrows `sparse_max_bytes`. Always marked stale.
pub fn pfmerge(
    dest: Option<&[u8]>,
    sources: &[&[u8]],
    sparse_max_bytes: usize,
) -> Result<Vec<u8>, HllError> {
    let mut max = vec![0u8; REGISTERS];
    let mut any_dense = false;
    for v in dest.iter().chain(sources.iter()) {
        merge_into(&mut max, v)?;
        any_dense |= is_dense(v);
    }
    let mut value = match dest {
        Some(v) => v.to_vec(),
        None => new_sparse(),
    };
    if any_dense {
        if !is_dense(&value) {
            value = sparse::to_dense(&value)?;
        }
        // The merged maxima include the destination's own registers, so writing them all is
        // what both the per-register loop (older servers) and the SIMD store (newer) do.
        let body = &mut value[HEADER_LEN..];
        for (i, &m) in max.iter().enumerate() {
            dense::set(body, i, m);
        }
    } else {
        for (i, &m) in max.iter().enumerate() {
            if m != 0 {
                raise(&mut value, i, m, sparse_max_bytes)?;
            }
        }
    }
    mark_stale(&mut value);
    Ok(value)
}

/// A single-key `PFCOUNT key` on an existing key: `Some(new value)` if the cached cardinality
/// was stale, so the server computed it, stored it in the header and propagated the command;
/// `None` if the cache was valid (nothing written, nothing propagated).
///
/// A PFCOUNT with several keys never writes (it merges into a scratch copy): do not call this
/// for it. [`pfcount`] gives its reply.
pub fn pfcount_update(current: &[u8]) -> Result<Option<Vec<u8>>, HllError> {
    check_header(current)?;
    if current[STALE_AT] & STALE_BIT == 0 {
        return Ok(None);
    }
    let card = estimate::estimate(&histogram(current)?);
    let mut value = current.to_vec();
    value[8..HEADER_LEN].copy_from_slice(&card.to_le_bytes());
    Ok(Some(value))
}

/// What `PFCOUNT key...` replies, given one entry per key argument (`None` for a missing
/// key), as the `u64` the server computes (it replies it as a signed 64-bit integer). With one
/// key: the cached cardinality when valid, else the estimate (0 for a missing key). With
/// several, even if only one exists: the estimate of their union, never the cache. Writes
/// nothing (see [`pfcount_update`]).
pub fn pfcount(values: &[Option<&[u8]>]) -> Result<u64, HllError> {
    match values {
        [None] => Ok(0),
        [Some(one)] => {
            check_header(one)?;
            if one[STALE_AT] & STALE_BIT == 0 {
                let mut card = [0u8; 8];
                card.copy_from_slice(&one[8..HEADER_LEN]);
                return Ok(u64::from_le_bytes(card));
            }
            Ok(estimate::estimate(&histogram(one)?))
        }
        _ => {
            let mut max = vec![0u8; REGISTERS];
            for v in values.iter().flatten() {
                merge_into(&mut max, v)?;
            }
            let mut hist = [0u32; 64];
            for &r in &max {
                hist[usize::from(r & 0x3f)] += 1;
            }
            Ok(estimate::estimate(&hist))
        }
    }
}

/// `PFDEBUG TODENSE key` and `PFDEBUG GETREG key`: both convert a sparse value to dense and,
/// only then, count as a write that is propagated. `Some(dense value)` for a sparse value
/// (header copied, cached cardinality untouched), `None` for one already dense.
pub fn to_dense(current: &[u8]) -> Result<Option<Vec<u8>>, HllError> {
    check_header(current)?;
    if is_dense(current) {
        return Ok(None);
    }
    sparse::to_dense(current).map(Some)
}

/// Register histogram of a checked value (sparse runs must cover exactly 16384 registers).
fn histogram(value: &[u8]) -> Result<estimate::Histogram, HllError> {
    let mut hist = [0u32; 64];
    if is_dense(value) {
        for r in dense::registers(&value[HEADER_LEN..]) {
            hist[usize::from(r)] += 1;
        }
    } else {
        let mut nonzero = 0u32;
        // Counting refuses any overshoot on every version (older ones add up every run and
        // compare the total with 16384).
        sparse::for_each_run(value, sparse::Overshoot::Refuse, |_, span, v| {
            // span <= 4 and v <= 32, so these cannot overflow.
            hist[usize::from(v)] += span as u32;
            nonzero += span as u32;
        })?;
        hist[0] = REGISTERS as u32 - nonzero;
    }
    Ok(hist)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pfadd_creates_a_stale_empty_sparse_value() {
        let (v, changed) = pfadd(None, &[], DEFAULT_SPARSE_MAX_BYTES).unwrap();
        assert!(changed);
        assert_eq!(v, b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\x80\x7f\xff");
        let (again, changed) = pfadd(Some(&v), &[], DEFAULT_SPARSE_MAX_BYTES).unwrap();
        assert!(!changed);
        assert_eq!(again, v);
    }

    #[test]
    fn count_of_empty_is_zero_and_cached() {
        let (v, _) = pfadd(None, &[], DEFAULT_SPARSE_MAX_BYTES).unwrap();
        let counted = pfcount_update(&v).unwrap().unwrap();
        assert_eq!(&counted[8..16], &[0; 8]);
        assert_eq!(pfcount_update(&counted).unwrap(), None);
    }

    #[test]
    fn sparse_and_dense_agree() {
        let elements: Vec<Vec<u8>> = (0u32..500).map(|i| i.to_be_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = elements.iter().map(Vec::as_slice).collect();
        let (sparse_v, _) = pfadd(None, &refs, usize::MAX).unwrap();
        let (dense_v, _) = pfadd(None, &refs, 0).unwrap();
        assert_eq!(sparse_v[ENCODING_AT], SPARSE);
        assert_eq!(dense_v.len(), DENSE_LEN);
        assert_eq!(to_dense(&sparse_v).unwrap().unwrap(), dense_v);
        let a = pfcount(&[Some(&sparse_v)]).unwrap();
        assert_eq!(a, pfcount(&[Some(&dense_v)]).unwrap());
        assert!((450..550).contains(&a), "{a}");
        assert_eq!(pfcount(&[Some(&sparse_v), Some(&dense_v)]).unwrap(), a);
        assert_eq!(pfcount(&[Some(&sparse_v), None]).unwrap(), a);
    }

    #[test]
    fn header_errors() {
        assert_eq!(pfcount_update(b"HYLL"), Err(HllError::TooShort { len: 4 }));
        assert_eq!(pfcount_update(&[0u8; 16]), Err(HllError::BadMagic));
        let mut v = new_sparse();
        v[ENCODING_AT] = 2;
        assert_eq!(pfcount_update(&v), Err(HllError::BadEncoding(2)));
        v[ENCODING_AT] = DENSE;
        assert_eq!(
            pfadd(Some(&v), &[], 3000),
            Err(HllError::BadDenseLength { len: 18 })
        );
    }

    #[test]
    fn random_mutations_never_panic() {
        let elements: Vec<Vec<u8>> = (0u32..300).map(|i| i.to_le_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = elements.iter().map(Vec::as_slice).collect();
        let (sparse_v, _) = pfadd(None, &refs, usize::MAX).unwrap();
        let (dense_v, _) = pfadd(None, &refs, 0).unwrap();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let mut v = if round % 2 == 0 {
                sparse_v.clone()
            } else {
                dense_v.clone()
            };
            for _ in 0..=(next() % 4) {
                let n = v.len();
                match next() % 4 {
                    0 if n > 0 => v[next() as usize % n] ^= 1 << (next() % 8),
                    1 if n > 0 => v.truncate(next() as usize % n),
                    2 => v.push(next() as u8),
                    _ if n > 0 => v[next() as usize % n] = next() as u8,
                    _ => {}
                }
            }
            let e: &[u8] = &elements[round % elements.len()];
            let _ = pfadd(Some(&v), &[e, b"x"], 1 + (next() % 4000) as usize);
            let _ = pfmerge(Some(&v), &[&sparse_v], 3000);
            let _ = pfmerge(None, &[&v, &dense_v], 3000);
            let _ = pfcount_update(&v);
            let _ = pfcount(&[Some(&v), None]);
            let _ = to_dense(&v);
        }
    }
}
