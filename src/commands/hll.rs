//! HyperLogLog commands as masters propagate them: PFADD and PFMERGE as typed, a
//! single-key PFCOUNT whose cached cardinality was stale (the master stores the new count in
//! the value's header and propagates the command), PFDEBUG TODENSE/GETREG (they convert a
//! sparse value to dense). The byte-exact representation work lives in `crate::hll`.
//!
//! The master's `hll-sparse-max-bytes` is not replicated; we use the server default (3000)
//! and document it. A PFCOUNT that finds our cached count fresh means our bytes differ from
//! the master's, which is drift.

use super::error::{invalid, ApplyError};
use super::parse::{Apply, Parse};
use super::state::StreamState;
use super::value_ops::{get_string, store};
use crate::hll::{self, DEFAULT_SPARSE_MAX_BYTES};
use crate::keyspace::Keyspace;
use crate::rdb::Value;

fn hll_err(cmd: &str, key: &[u8], e: hll::HllError) -> ApplyError {
    invalid(
        cmd,
        format!(
            "key {}: {e}: our data differs from the master's",
            crate::rdb::error::escape_key(key)
        ),
    )
}

/// PFADD key element…
pub fn pfadd(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, elements @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let cur = get_string(ks, db, cmd, key)?;
    let els: Vec<&[u8]> = elements.iter().map(Vec::as_slice).collect();
    let (new, changed) = hll::pfadd(
        cur.as_ref().map(|(_, v)| v.as_slice()),
        &els,
        DEFAULT_SPARSE_MAX_BYTES,
    )
    .map_err(|e| hll_err(cmd, key, e))?;
    if !changed {
        return Ok(());
    }
    let h = cur.map(|(h, _)| h).unwrap_or_default();
    store(ks, db, key, &h, &Value::String(new))
}

/// PFMERGE dest source…: the destination (kept TTL) is merged with the existing sources.
pub fn pfmerge(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [dest, sources @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let cur = get_string(ks, db, cmd, dest)?;
    let mut srcs = Vec::new();
    for k in sources {
        if let Some((_, v)) = get_string(ks, db, cmd, k)? {
            srcs.push(v);
        }
    }
    let refs: Vec<&[u8]> = srcs.iter().map(Vec::as_slice).collect();
    let new = hll::pfmerge(
        cur.as_ref().map(|(_, v)| v.as_slice()),
        &refs,
        DEFAULT_SPARSE_MAX_BYTES,
    )
    .map_err(|e| hll_err(cmd, dest, e))?;
    let h = cur.map(|(h, _)| h).unwrap_or_default();
    store(ks, db, dest, &h, &Value::String(new))
}

/// PFCOUNT key: arrives only when the master refreshed the cached count.
pub fn pfcount(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key] = args else {
        // The multi-key form writes nothing and is never propagated.
        return Ok(());
    };
    let Some((h, v)) = get_string(ks, db, cmd, key)? else {
        return Ok(());
    };
    match hll::pfcount_update(&v).map_err(|e| hll_err(cmd, key, e))? {
        Some(new) => store(ks, db, key, &h, &Value::String(new)),
        None => Ok(()),
    }
}

/// PFDEBUG TODENSE|GETREG key: both leave a sparse value dense.
pub fn pfdebug(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [sub, key] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
    if sub != "TODENSE" && sub != "GETREG" {
        return Err(invalid(cmd, format!("unsupported PFDEBUG {sub}")));
    }
    let Some((h, v)) = get_string(ks, db, cmd, key)? else {
        return Ok(());
    };
    match hll::to_dense(&v).map_err(|e| hll_err(cmd, key, e))? {
        Some(new) => store(ks, db, key, &h, &Value::String(new)),
        None => Ok(()),
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
            "PFADD" => pfadd(ks, st.db, name, args),
            "PFMERGE" => pfmerge(ks, st.db, name, args),
            "PFCOUNT" => pfcount(ks, st.db, name, args),
            "PFDEBUG" => pfdebug(ks, st.db, name, args),
            _ => Err(ApplyError::Unknown(name.to_string())),
        }
    }
}
