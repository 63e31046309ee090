//! Rewriting an RDB file for a target server: read one record, write one record.
//!
//! Owns the mapping from what the reader yields to what the writer takes, in bounded
//! memory (one value at a time). It must never drop data silently: what the target cannot
//! hold is an error naming the key; only records that carry no data for the target are
//! left out (cluster slot hints, hash templates whose hashes are written in full, empty
//! collections that servers drop on load anyway), and the report counts them.

use std::io::{Read, Write};

use crate::rdb::writer::{KeyRecord, RdbWriter, Target, WriteError, WriteOptions};
use crate::rdb::{Item, RdbError, RdbReader};
use crate::server_version::ServerVersion;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{0}")]
    Read(#[from] RdbError),
    #[error("{0}")]
    Write(#[from] WriteError),
    #[error("{0}")]
    Target(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConvertReport {
    pub target: ServerVersion,
    pub keys_written: u64,
    /// Empty collections in the source, which servers drop on load.
    pub empty_skipped: u64,
    pub bytes: u64,
}

/// The server a file was written by, from its header and aux fields (which come first).
fn infer_source(valkey_magic: bool, version: u32, aux: &[(Vec<u8>, Vec<u8>)]) -> ServerVersion {
    let get = |k: &[u8]| {
        aux.iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    ServerVersion::infer(
        valkey_magic,
        version,
        get(b"redis-ver").as_deref(),
        get(b"valkey-ver").as_deref(),
    )
}

/// Convert everything `reader` yields into an RDB for `target` (default: the source's
/// own server) written to `out`.
pub fn convert<R: Read, W: Write>(
    mut reader: RdbReader<R>,
    out: W,
    target: Option<ServerVersion>,
    opts: WriteOptions,
) -> Result<(W, ConvertReport), ConvertError> {
    let header = reader.header();
    // Aux fields lead the file; collect them to learn the source server before writing.
    let mut aux = Vec::new();
    let mut first = None;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Aux { key, value } => aux.push((key, value)),
            other => {
                first = Some(other);
                break;
            }
        }
    }
    let server = target.unwrap_or_else(|| {
        infer_source(
            header.dialect == crate::rdb::Dialect::Valkey,
            header.version,
            &aux,
        )
    });
    let t = Target::for_server(server).map_err(ConvertError::Target)?;
    let mut w = RdbWriter::new(out, t, opts)?;
    for (k, v) in &aux {
        w.aux(k, v)?;
    }
    let mut report = ConvertReport {
        target: server,
        keys_written: 0,
        empty_skipped: 0,
        bytes: 0,
    };
    let mut next = first;
    while let Some(item) = next {
        match item {
            Item::Aux { key, value } => w.aux(&key, &value)?,
            Item::Function { code } => w.function(&code)?,
            Item::FunctionPreGa {
                name, engine, code, ..
            } => {
                // What Redis 7.0 makes of it on load (seen with FUNCTION LIST WITHCODE):
                // a shebang line naming engine and library, then the body; the
                // description is dropped.
                let mut lib = b"#!".to_vec();
                lib.extend_from_slice(&engine);
                lib.extend_from_slice(b" name=");
                lib.extend_from_slice(&name);
                lib.push(b'\n');
                lib.extend_from_slice(&code);
                w.function(&lib)?
            }
            Item::ModuleAux { module, .. } => w.module_aux(&module.raw)?,
            Item::SelectDb(db) => w.select_db(db)?,
            Item::ResizeDb {
                db_size,
                expires_size,
            } => w.resize_db(db_size, expires_size)?,
            Item::SlotInfo { .. } | Item::SlotImport { .. } | Item::HashTemplate { .. } => {}
            Item::Key(k) => {
                let rec = KeyRecord::from(&*k);
                if w.key(&rec)? {
                    report.keys_written += 1;
                } else {
                    report.empty_skipped += 1;
                }
            }
            Item::End { checksum, .. } => {
                if !checksum.ok() {
                    return Err(ConvertError::Target(format!(
                        "source checksum mismatch (stored {:016x}, computed {:016x}): refusing to rewrite a damaged file",
                        checksum.stored.unwrap_or(0),
                        checksum.computed
                    )));
                }
                let (out, bytes) = w.finish()?;
                report.bytes = bytes;
                return Ok((out, report));
            }
        }
        next = reader.next_item()?;
    }
    Err(ConvertError::Target(
        "the source ended without its EOF record".into(),
    ))
}
