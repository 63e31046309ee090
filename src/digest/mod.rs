//! `DEBUG DIGEST` computed offline: from an RDB file alone, the 40 hex digits a given
//! server version answers after loading it (docs/digest.md has the algorithm per version
//! and where each fact comes from).
//!
//! Owns the digest arithmetic, the per-version rules and the judgement of what a server
//! keeps on load. It streams like the reader does: each key is folded into one 20-byte
//! accumulator per database as it goes by, so memory stays bounded by the largest value.
//! It must never return a digest it cannot stand behind: a module value (the server asks
//! the module), a file or value the target cannot load, or a read error is an error.

mod dataset;
pub mod elements;
mod error;
mod framed;
pub mod mix;
pub mod parallel;
mod raw;
pub mod score;
pub mod sha1x;
pub mod target;
pub mod value;

use std::io::Read;

use crate::rdb::{Dialect, Framed, FramedIn, Item, KeyEntry, RdbError, RdbReader};
use crate::server_version::ServerVersion;

pub use dataset::DatasetDigest;
pub use error::DigestError;
pub use mix::Acc;
pub use parallel::ParallelDigest;
pub use target::Rules;

/// How to digest a file.
#[derive(Debug, Clone, Copy)]
pub struct DigestOptions {
    /// The server whose answer to compute; `None`: the one that wrote the file.
    pub target: Option<ServerVersion>,
    /// "Now" for expiries, Unix ms: keys (and, on Valkey 9, hash fields) whose time has
    /// passed are dropped by the loading server and so do not count.
    pub now_ms: i64,
    /// The target runs with `rdb-version-check relaxed` (Valkey 9+).
    pub relaxed: bool,
    /// The target's `databases` setting.
    pub databases: u64,
    /// Threads that hash keys while the caller's parses (0: the caller does it all).
    pub workers: usize,
}

impl DigestOptions {
    pub fn new(now_ms: i64) -> Self {
        DigestOptions {
            target: None,
            now_ms,
            relaxed: false,
            databases: target::DEFAULT_DATABASES,
            workers: parallel::default_workers(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestReport {
    pub digest: Acc,
    /// The server version the digest is for (given or inferred).
    pub target: ServerVersion,
    /// Keys the target keeps and that entered the digest.
    pub keys: u64,
    /// Keys the target drops on load (expired, or empty once loaded).
    pub dropped: u64,
}

impl DigestReport {
    /// 40 lowercase hex digits, as `DEBUG DIGEST` prints them.
    pub fn hex(&self) -> String {
        mix::hex(&self.digest)
    }
}

/// Read a whole file and compute the digest the target would answer after loading it.
/// `progress` is called now and then with the byte offset.
/// Keys are hashed on `opts.workers` threads while this one parses.
pub fn digest_rdb<R: Read>(
    mut reader: RdbReader<R>,
    opts: &DigestOptions,
    progress: impl FnMut(u64),
) -> Result<DigestReport, DigestError> {
    let mut digest: Option<ParallelDigest> = None;
    match digest_loop(&mut reader, opts, progress, &mut digest) {
        Ok(r) => Ok(r),
        // A worker may have failed on an earlier key: report the earliest, as one
        // thread reading in order would.
        Err(e) => match digest.as_mut() {
            Some(d) => Err(d.stop(reader.offset(), Some(e))),
            None => Err(e),
        },
    }
}

/// A target named by the user must know the type of every key.
fn known_type(rules: &Rules, k: &KeyEntry, dialect: Dialect) -> Result<(), DigestError> {
    known_type_of(rules, k.rdb_type, || k.key.clone(), dialect)
}

fn known_type_of(
    rules: &Rules,
    ty: u8,
    key: impl FnOnce() -> Vec<u8>,
    dialect: Dialect,
) -> Result<(), DigestError> {
    if rules.knows_type(ty, dialect) {
        return Ok(());
    }
    Err(DigestError::cannot_load(
        &key(),
        format!(
            "{} does not know type {} ({})",
            rules.target,
            ty,
            crate::rdb::code_name(ty, dialect)
        ),
    ))
}

fn digest_loop<R: Read>(
    reader: &mut RdbReader<R>,
    opts: &DigestOptions,
    mut progress: impl FnMut(u64),
    digest: &mut Option<ParallelDigest>,
) -> Result<DigestReport, DigestError> {
    let header = reader.header();
    let (mut redis_ver, mut valkey_ver): (Option<String>, Option<String>) = (None, None);
    // The writer loads its own file: the load gates apply to a target named by the user.
    let explicit = opts.target.is_some();
    let start = |redis_ver: &Option<String>, valkey_ver: &Option<String>| {
        let target = opts.target.unwrap_or_else(|| {
            let valkey = header.dialect == Dialect::Valkey;
            let v = ServerVersion::infer(
                valkey,
                header.version,
                redis_ver.as_deref(),
                valkey_ver.as_deref(),
            );
            // Forks and tools write placeholders such as "0.0.0": judge by the format.
            if v.major < 2 {
                ServerVersion::infer(valkey, header.version, None, None)
            } else {
                v
            }
        });
        let mut rules = Rules::for_target(target).map_err(DigestError::CannotLoad)?;
        rules.relaxed_version = opts.relaxed;
        rules.databases = opts.databases;
        if explicit {
            rules
                .check_header(header.dialect, header.version)
                .map_err(DigestError::CannotLoad)?;
        }
        Ok::<_, DigestError>(ParallelDigest::new(rules, opts.now_ms, opts.workers))
    };
    if opts.target.is_some() {
        *digest = Some(start(&None, &None)?);
    }
    let mut n = 0u64;
    // Where keys are framed before the digest has started (its own arena after).
    let mut pre = Vec::new();
    loop {
        let arena = match digest.as_mut() {
            Some(d) => d.arena(),
            None => &mut pre,
        };
        let Some(framed) = reader.next_framed_in(arena)? else {
            break;
        };
        let framed = match framed {
            FramedIn::Framed(f) => f,
            FramedIn::Raw(k) => {
                n += 1;
                if n.is_multiple_of(1024) {
                    progress(reader.offset());
                }
                let d = match digest.as_mut() {
                    Some(d) => d,
                    None => {
                        let d = digest.insert(start(&redis_ver, &valkey_ver)?);
                        d.adopt_arena(std::mem::take(&mut pre));
                        d
                    }
                };
                if explicit && !d.rules().knows_type(k.rdb_type, header.dialect) {
                    let name = d.arena().get(k.name.clone()).unwrap_or_default();
                    let name = crate::rdb::decode_string(name, "key name").unwrap_or_default();
                    known_type_of(d.rules(), k.rdb_type, || name, header.dialect)?;
                }
                d.add_raw(k)?;
                continue;
            }
        };
        let item = match framed {
            Framed::Item(item) => item,
            Framed::Encoded {
                key,
                value_at,
                encoded,
            } => {
                n += 1;
                if n.is_multiple_of(1024) {
                    progress(reader.offset());
                }
                let d = match digest.as_mut() {
                    Some(d) => d,
                    None => digest.insert(start(&redis_ver, &valkey_ver)?),
                };
                if explicit {
                    known_type(d.rules(), &key, header.dialect)?;
                }
                d.add_framed(key, value_at, encoded)?;
                continue;
            }
        };
        n += 1;
        if n.is_multiple_of(1024) {
            progress(reader.offset());
        }
        match item {
            Item::Aux { key, value } => match key.as_slice() {
                b"redis-ver" => redis_ver = Some(String::from_utf8_lossy(&value).into_owned()),
                b"valkey-ver" => valkey_ver = Some(String::from_utf8_lossy(&value).into_owned()),
                _ => {}
            },
            Item::Key(k) => {
                let d = match digest.as_mut() {
                    Some(d) => d,
                    None => digest.insert(start(&redis_ver, &valkey_ver)?),
                };
                if explicit {
                    known_type(d.rules(), &k, header.dialect)?;
                }
                d.add(k)?;
            }
            Item::SlotImport { .. } => {
                return Err(DigestError::CannotLoad(
                    "SLOT_IMPORT record: only a cluster-mode server loads it".into(),
                ))
            }
            Item::End { checksum, .. } => {
                progress(reader.offset());
                if !checksum.ok() {
                    return Err(DigestError::CannotLoad(format!(
                        "checksum mismatch: stored {:016x}, computed {:016x} (servers refuse the file)",
                        checksum.stored.unwrap_or(0),
                        checksum.computed
                    )));
                }
                let d = match digest.take() {
                    Some(d) => d,
                    None => start(&redis_ver, &valkey_ver)?,
                };
                let d = d.finish()?;
                return Ok(DigestReport {
                    digest: d.finish(),
                    target: d.rules().target,
                    keys: d.keys(),
                    dropped: d.dropped(),
                });
            }
            // Functions, module aux data, resize hints and templates are not keys: the
            // digest covers the keyspace only.
            Item::Function { .. }
            | Item::FunctionPreGa { .. }
            | Item::ModuleAux { .. }
            | Item::HashTemplate { .. }
            | Item::SelectDb(_)
            | Item::ResizeDb { .. }
            | Item::SlotInfo { .. } => {}
        }
    }
    Err(RdbError::new(
        reader.offset(),
        crate::rdb::ErrorKind::invalid("file", "ended without an EOF record"),
    )
    .into())
}
