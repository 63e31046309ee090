//! Reading a key's value for a change and storing the result, with the rules every family
//! shares: a change keeps the key's expiry, an emptied collection deletes the key, a value
//! of the wrong type is drift.

use super::error::{invalid, ApplyError};
use crate::keyspace::native::NATIVE_MIN;
use crate::keyspace::{Entry, Hints, Keyspace, Kind, Native};
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
    let v = e.decode().map_err(|err| {
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

fn kind_of(v: &Value) -> Option<Kind> {
    Some(match v {
        Value::Set(_) => Kind::Set,
        Value::Hash(_) => Kind::Hash,
        Value::SortedSet(_) => Kind::ZSet,
        Value::List(_) => Kind::List,
        Value::Stream(_) => Kind::Stream,
        _ => return None,
    })
}

/// A packed key's hints, decoded value and stored type byte.
pub type Decoded = (Hints, Value, u8);

/// What a collection command finds at its key, looked up and decoded once.
pub enum Prepared {
    /// A native value: change it through [`on_native`].
    Native,
    /// A packed value, decoded (`None`: the key is absent).
    Packed(Option<Decoded>),
}

impl Prepared {
    /// `f` when the value is native (it changes it in place), `None` otherwise.
    pub fn run<R>(&self, f: impl FnOnce() -> Option<R>) -> Option<R> {
        match self {
            Prepared::Native => f(),
            Prepared::Packed(_) => None,
        }
    }

    /// The decoded packed value (`None`: absent, or native).
    pub fn packed(self) -> Option<Decoded> {
        match self {
            Prepared::Packed(d) => d,
            Prepared::Native => None,
        }
    }
}

/// Look `key` up for a command that adds up to `extra` elements to a collection of `kind`
/// (0 for one that only changes or removes): a packed value that will then hold
/// [`NATIVE_MIN`] or more is made native first (an absent key is created empty and native
/// when `create` and `extra` alone reach it). A key of another type is [`wrongtype`].
/// Sorted sets the master still holds compact (listpack) stay packed: their -0 rule is
/// applied by the packed path until the master converts them.
pub fn prepare(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    kind: Kind,
    extra: usize,
    create: bool,
) -> Result<Prepared, ApplyError> {
    let found = ks.entry(db, key);
    prepare_found(ks, db, cmd, key, kind, extra, create, found)
}

/// [`prepare`] with the key's entry already looked up (`found`).
#[allow(clippy::too_many_arguments)]
pub fn prepare_found(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    kind: Kind,
    extra: usize,
    create: bool,
    found: Option<Entry>,
) -> Result<Prepared, ApplyError> {
    let e = match found {
        None => {
            if create && extra >= NATIVE_MIN {
                ks.put(
                    db,
                    Entry::native(key, Hints::default(), Native::empty_like(kind)),
                );
                return Ok(Prepared::Native);
            }
            return Ok(Prepared::Packed(None));
        }
        Some(Entry::Native(n)) => {
            if n.value.kind() != kind {
                return Err(wrongtype(cmd, key));
            }
            return Ok(Prepared::Native);
        }
        Some(e) => e,
    };
    let v = e.decode().map_err(|err| {
        ApplyError::Keyspace(crate::keyspace::KeyspaceError::Corrupt {
            key: crate::rdb::error::escape_key(key),
            err: err.to_string(),
        })
    })?;
    if kind_of(&v) != Some(kind) {
        return Err(wrongtype(cmd, key));
    }
    let ty = e.rdb_type();
    let plain = !matches!(
        ty,
        crate::rdb::types::ZSET_LISTPACK | crate::rdb::types::ZSET_ZIPLIST
    );
    if extra > 0 && v.len() + extra >= NATIVE_MIN && (kind != Kind::ZSet || plain) {
        if let Some(n) = Native::from_value_any(&v) {
            ks.put(db, Entry::native(key, e.hints(), n));
            return Ok(Prepared::Native);
        }
    }
    Ok(Prepared::Packed(Some((e.hints(), v, ty))))
}

/// Run `f` on the native value of `key` if it holds one of `kind` (`None`: absent or
/// packed); another kind is [`wrongtype`].
pub fn on_native<R>(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    kind: Kind,
    f: impl FnOnce(&mut Native) -> Result<R, ApplyError>,
) -> Option<Result<R, ApplyError>> {
    ks.with_native(db, key, |n| {
        if n.kind() != kind {
            return Err(wrongtype(cmd, key));
        }
        f(n)
    })
}
