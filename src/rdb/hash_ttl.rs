//! Hashes with per-field expiry: Redis types 22–25 and Valkey type 22 (HASH_2).
//!
//! Owns the TTL encodings, which differ in every variant: Redis 7.4 release candidates
//! (22/23: absolute, 0 = none), Redis 7.4+ (24: relative to a stored minimum, 0 = none;
//! 25: absolute inside a listpack), Valkey 9 (22: fixed 8 bytes after the value, -1 = none).
//! It must never read one dialect's layout for the other: the magic decides.

use std::io::Read;

use super::blob::{blob, packed_err, reserve};
use super::error::{ErrorKind, RdbError, Result};
use super::input::Input;
use super::packed::{self, Elem};
use super::types::*;
use super::value::{HashField, Value};
use super::Dialect;

/// Largest field expiry the servers accept (their expiry-bucket time limit, 2^48 - 1).
const MAX_FIELD_TTL: u64 = (1 << 48) - 1;

fn check_ttl(at: u64, ttl: u64) -> Result<Option<u64>> {
    if ttl == 0 {
        return Ok(None);
    }
    if ttl > MAX_FIELD_TTL {
        return Err(RdbError::new(
            at,
            ErrorKind::invalid("hash field TTL", format!("{ttl} exceeds 2^48-1")),
        ));
    }
    Ok(Some(ttl))
}

pub(super) fn read<R: Read>(inp: &mut Input<R>, ty: u8, dialect: Dialect) -> Result<Value> {
    match (ty, dialect) {
        (T22, Dialect::Valkey) => read_valkey_hash2(inp),
        (T22, Dialect::Redis) => read_fields(inp, None),
        (HASH_METADATA, Dialect::Redis) => {
            let min = inp.read_ms_time("hash minimum field expiry")?;
            read_fields(inp, Some(min))
        }
        (T23, Dialect::Redis) => read_listpack_ex(inp),
        (HASH_LISTPACK_EX, Dialect::Redis) => {
            // The stored minimum is informational; loaders recompute it.
            inp.read_ms_time("hash minimum field expiry")?;
            read_listpack_ex(inp)
        }
        _ => Err(RdbError::new(
            inp.offset().saturating_sub(1),
            ErrorKind::UnknownType(ty, super::code_name(ty, dialect)),
        )),
    }
}

/// Types 22 (Redis RC) and 24: `(ttl, field, value)` triples; 24's TTLs are `ttl + min - 1`.
fn read_fields<R: Read>(inp: &mut Input<R>, min: Option<i64>) -> Result<Value> {
    let n = inp.read_count(3, "hash size")?;
    let mut v = Vec::with_capacity(reserve(n));
    for _ in 0..n {
        let at = inp.offset();
        let raw = inp.read_len("hash field TTL")?;
        let ttl = match (raw, min) {
            (0, _) => 0,
            (t, None) => t,
            (t, Some(m)) => t
                .checked_add(m as u64)
                .and_then(|x| x.checked_sub(1))
                .ok_or_else(|| {
                    RdbError::new(
                        at,
                        ErrorKind::invalid("hash field TTL", format!("{t} + {m} overflows")),
                    )
                })?,
        };
        let expire_ms = check_ttl(at, ttl)?;
        let field = inp.read_string("hash field")?;
        let value = inp.read_string("hash value")?;
        v.push(HashField {
            field,
            value,
            expire_ms,
        });
    }
    Ok(Value::Hash(v))
}

/// Types 23 (Redis RC) and 25: a listpack of `field, value, ttl` triplets, absolute ms.
fn read_listpack_ex<R: Read>(inp: &mut Input<R>) -> Result<Value> {
    let (at, b) = blob(inp, "hash listpack with TTLs")?;
    let items = packed::listpack(&b).map_err(|e| packed_err(at, "hash listpack with TTLs", e))?;
    if items.len() % 3 != 0 {
        return Err(RdbError::new(
            at,
            ErrorKind::invalid(
                "hash listpack with TTLs",
                format!("{} elements is not a multiple of 3", items.len()),
            ),
        ));
    }
    let mut v = Vec::with_capacity(items.len() / 3);
    for t in items.chunks_exact(3) {
        let ttl = match t[2] {
            Elem::Int(i) if i >= 0 => i as u64,
            _ => {
                return Err(RdbError::new(
                    at,
                    ErrorKind::invalid(
                        "hash listpack with TTLs",
                        "field TTL is not a non-negative integer",
                    ),
                ))
            }
        };
        v.push(HashField {
            field: t[0].to_bytes(),
            value: t[1].to_bytes(),
            expire_ms: check_ttl(at, ttl)?,
        });
    }
    Ok(Value::Hash(v))
}

/// Valkey 22: `(field, value, expire ms64)` triples, -1 = no TTL.
fn read_valkey_hash2<R: Read>(inp: &mut Input<R>) -> Result<Value> {
    let n = inp.read_count(10, "hash size")?;
    let mut v = Vec::with_capacity(reserve(n));
    for _ in 0..n {
        let field = inp.read_string("hash field")?;
        let value = inp.read_string("hash value")?;
        let at = inp.offset();
        let t = inp.read_ms_time("hash field expiry")?;
        let expire_ms = match t {
            -1 => None,
            t if t >= 0 => Some(t as u64),
            t => {
                return Err(RdbError::new(
                    at,
                    ErrorKind::invalid("hash field expiry", format!("{t} is negative")),
                ))
            }
        };
        v.push(HashField {
            field,
            value,
            expire_ms,
        });
    }
    Ok(Value::Hash(v))
}
