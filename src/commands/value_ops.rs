//! Reading a key's value for a change and storing the result, with the rules every family
//! shares: a change keeps the key's expiry, an emptied collection deletes the key, a value
//! of the wrong type is drift.

use super::{invalid, ApplyError};
use crate::keyspace::{Hints, Keyspace};
use crate::rdb::Value;

pub fn load(ks: &Keyspace, db: u64, key: &[u8]) -> Result<Option<(Hints, Value)>, ApplyError> {
    Ok(load_typed(ks, db, key)?.map(|(h, v, _)| (h, v)))
}

/// A key's hints, value and the type byte of its stored encoding, in one lookup.
pub fn load_typed(
    ks: &Keyspace,
    db: u64,
    key: &[u8],
) -> Result<Option<(Hints, Value, u8)>, ApplyError> {
    let Some(e) = ks.entry(db, key) else {
        return Ok(None);
    };
    let hints = e.hints();
    let v = crate::rdb::decode_value(e.rdb_type(), e.payload(), crate::rdb::Dialect::Redis)
        .map_err(|err| {
            ApplyError::Keyspace(crate::keyspace::KeyspaceError::Corrupt {
                key: crate::rdb::error::escape_key(key),
                err: err.to_string(),
            })
        })?;
    Ok(Some((hints, v, e.rdb_type())))
}

/// Store `v` under `key` with `hints`; an empty collection deletes the key instead.
pub fn store(
    ks: &mut Keyspace,
    db: u64,
    key: &[u8],
    hints: &Hints,
    v: &Value,
) -> Result<(), ApplyError> {
    if v.is_empty_collection() {
        ks.remove(db, key);
        return Ok(());
    }
    ks.set_with(db, key, hints, v, None)?;
    Ok(())
}

/// The error for a command applied to a key of another type: the master would have
/// refused it, so receiving it means our data differs.
pub fn wrongtype(cmd: &str, key: &[u8]) -> ApplyError {
    invalid(
        cmd,
        format!(
            "WRONGTYPE for key {}: our data differs from the master's",
            crate::rdb::error::escape_key(key)
        ),
    )
}

/// A string key's hints and bytes; another type is [`wrongtype`].
pub fn get_string(
    ks: &Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
) -> Result<Option<(Hints, Vec<u8>)>, ApplyError> {
    match load(ks, db, key)? {
        None => Ok(None),
        Some((h, Value::String(s))) => Ok(Some((h, s))),
        Some(_) => Err(wrongtype(cmd, key)),
    }
}
