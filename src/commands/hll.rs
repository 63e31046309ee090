//! HyperLogLog commands as masters propagate them: PFADD and PFMERGE as typed, a
//! single-key PFCOUNT whose cached cardinality was stale (the master stores the new count in
//! the value's header and propagates the command), PFDEBUG TODENSE/GETREG (they convert a
//! sparse value to dense). The byte-exact representation work lives in `crate::hll`.
//!
//! The master's `hll-sparse-max-bytes` is not replicated; we use the server default (3000)
//! and document it. A PFCOUNT that finds our cached count fresh means our bytes differ from
//! the master's, which is drift.
//!
//! [`parse`] checks the arguments into a typed [`Cmd`]; its [`Apply`] changes the values.

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

/// A command of this family, parsed.
pub(super) enum Cmd<'a> {
    Add {
        key: &'a [u8],
        elements: &'a [Vec<u8>],
    },
    Merge {
        dest: &'a [u8],
        sources: &'a [Vec<u8>],
    },
    /// PFCOUNT with one key (`None`: the multi-key form, which writes nothing and is never
    /// propagated).
    Count { key: Option<&'a [u8]> },
    /// PFDEBUG TODENSE|GETREG key: both leave a sparse value dense.
    Debug { key: &'a [u8] },
}

const PFADD: &str = "PFADD";
const PFMERGE: &str = "PFMERGE";
const PFCOUNT: &str = "PFCOUNT";
const PFDEBUG: &str = "PFDEBUG";

pub(super) fn parse(mut p: Parse<'_>) -> Result<Cmd<'_>, ApplyError> {
    let name = p.name();
    Ok(match name {
        PFADD => Cmd::Add {
            key: p.next()?,
            elements: p.rest(),
        },
        PFMERGE => Cmd::Merge {
            dest: p.next()?,
            sources: p.rest(),
        },
        PFCOUNT => match p.rest() {
            [key] => Cmd::Count { key: Some(key) },
            _ => Cmd::Count { key: None },
        },
        PFDEBUG => {
            let (sub, key) = (p.next()?, p.next()?);
            p.finish()?;
            let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
            if sub != "TODENSE" && sub != "GETREG" {
                return Err(p.error(format!("unsupported PFDEBUG {sub}")));
            }
            Cmd::Debug { key }
        }
        _ => return Err(ApplyError::Unknown(name.to_string())),
    })
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        let db = st.db;
        match self {
            Cmd::Add { key, elements } => pfadd(ks, db, key, elements),
            Cmd::Merge { dest, sources } => pfmerge(ks, db, dest, sources),
            Cmd::Count { key: Some(key) } => pfcount(ks, db, key),
            Cmd::Count { key: None } => Ok(()),
            Cmd::Debug { key } => pfdebug(ks, db, key),
        }
    }
}

/// PFADD key element…
fn pfadd(ks: &mut Keyspace, db: u64, key: &[u8], elements: &[Vec<u8>]) -> Result<(), ApplyError> {
    let cmd = PFADD;
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
fn pfmerge(ks: &mut Keyspace, db: u64, dest: &[u8], sources: &[Vec<u8>]) -> Result<(), ApplyError> {
    let cmd = PFMERGE;
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
fn pfcount(ks: &mut Keyspace, db: u64, key: &[u8]) -> Result<(), ApplyError> {
    let cmd = PFCOUNT;
    let Some((h, v)) = get_string(ks, db, cmd, key)? else {
        return Ok(());
    };
    match hll::pfcount_update(&v).map_err(|e| hll_err(cmd, key, e))? {
        Some(new) => store(ks, db, key, &h, &Value::String(new)),
        None => Ok(()),
    }
}

/// PFDEBUG TODENSE|GETREG key.
fn pfdebug(ks: &mut Keyspace, db: u64, key: &[u8]) -> Result<(), ApplyError> {
    let cmd = PFDEBUG;
    let Some((h, v)) = get_string(ks, db, cmd, key)? else {
        return Ok(());
    };
    match hll::to_dense(&v).map_err(|e| hll_err(cmd, key, e))? {
        Some(new) => store(ks, db, key, &h, &Value::String(new)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<Vec<u8>> {
        a.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn parse_checks_what_apply_used_to() {
        let ok = |n, a: &[&str]| parse(Parse::new(n, &argv(a))).is_ok();
        assert!(!ok(PFADD, &[]));
        assert!(ok(PFADD, &["k"]));
        assert!(!ok(PFMERGE, &[]));
        assert!(ok(PFCOUNT, &[]));
        assert!(ok(PFCOUNT, &["a", "b"]));
        assert!(ok(PFDEBUG, &["todense", "k"]));
        assert!(ok(PFDEBUG, &["GetReg", "k"]));
        assert!(!ok(PFDEBUG, &["decode", "k"]));
        assert!(!ok(PFDEBUG, &["todense"]));
        assert!(!ok(PFDEBUG, &["todense", "k", "x"]));
    }
}
