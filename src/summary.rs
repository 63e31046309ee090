//! A streaming summary of an RDB file: header, aux fields, per-database counts, checksum.
//!
//! Owns what `inspect` prints and what a snapshot manifest records about its file. It
//! reads through [`crate::rdb::RdbReader`] one record at a time and keeps only counters,
//! so any file is summarised in bounded memory. It must never hide a failure: a read
//! error is returned as is, and a bad checksum is reported, not corrected.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;

use crate::rdb::{Item, RdbReader, Result};

/// The type names `inspect` counts, in the order it prints them.
pub const TYPE_NAMES: [&str; 7] = ["string", "list", "set", "zset", "hash", "stream", "module"];

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DbSummary {
    pub db: u64,
    pub keys: u64,
    pub expires: u64,
    pub types: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChecksumSummary {
    /// Hex of the stored trailer; null when the file has none or it is zero (disabled).
    pub stored: Option<String>,
    pub computed: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileSummary {
    pub magic: String,
    pub rdb_version: u32,
    pub aux: BTreeMap<String, String>,
    pub databases: Vec<DbSummary>,
    pub keys_total: u64,
    pub keys_loadable: u64,
    pub functions: u64,
    pub module_aux: u64,
    pub checksum: ChecksumSummary,
    /// Bytes after the trailer (servers ignore them).
    pub trailing_bytes: u64,
}

/// Read the whole file and summarise it. `now_ms` decides which expiries have passed.
/// `progress` is called now and then with the current byte offset.
pub fn summarize<R: Read>(
    mut reader: RdbReader<R>,
    now_ms: i64,
    mut progress: impl FnMut(u64),
) -> Result<FileSummary> {
    let header = reader.header();
    let mut aux = BTreeMap::new();
    let mut dbs: BTreeMap<u64, DbSummary> = BTreeMap::new();
    let (mut keys_total, mut keys_loadable, mut functions, mut module_aux) = (0, 0, 0, 0);
    let mut n = 0u64;
    while let Some(item) = reader.next_item()? {
        n += 1;
        if n.is_multiple_of(1024) {
            progress(reader.offset());
        }
        match item {
            Item::Aux { key, value } => {
                aux.insert(
                    String::from_utf8_lossy(&key).into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                );
            }
            Item::Function { .. } | Item::FunctionPreGa { .. } => functions += 1,
            Item::ModuleAux { .. } => module_aux += 1,
            Item::Key(k) => {
                let d = dbs.entry(k.db).or_insert_with(|| DbSummary {
                    db: k.db,
                    keys: 0,
                    expires: 0,
                    types: TYPE_NAMES.iter().map(|t| (t.to_string(), 0)).collect(),
                });
                d.keys += 1;
                if k.expire_ms.is_some() {
                    d.expires += 1;
                }
                // Count by name without allocating: the 7 usual names are pre-seeded.
                match d.types.get_mut(k.value.type_name()) {
                    Some(n) => *n += 1,
                    None => {
                        d.types.insert(k.value.type_name().to_string(), 1);
                    }
                }
                keys_total += 1;
                if k.loadable(now_ms) {
                    keys_loadable += 1;
                }
            }
            Item::End { checksum, trailing } => {
                progress(reader.offset());
                return Ok(FileSummary {
                    magic: header.magic().to_string(),
                    rdb_version: header.version,
                    aux,
                    databases: dbs.into_values().collect(),
                    keys_total,
                    keys_loadable,
                    functions,
                    module_aux,
                    checksum: ChecksumSummary {
                        stored: checksum
                            .stored
                            .filter(|&s| s != 0)
                            .map(|s| format!("{s:016x}")),
                        computed: format!("{:016x}", checksum.computed),
                        ok: checksum.ok(),
                    },
                    trailing_bytes: trailing,
                });
            }
            Item::HashTemplate { .. }
            | Item::SelectDb(_)
            | Item::ResizeDb { .. }
            | Item::SlotInfo { .. }
            | Item::SlotImport { .. } => {}
        }
    }
    // next_item() yields End before None, so the loop always returns above.
    Err(crate::rdb::RdbError::new(
        reader.offset(),
        crate::rdb::ErrorKind::invalid("file", "ended without an EOF record"),
    ))
}
