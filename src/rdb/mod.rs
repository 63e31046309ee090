//! The RDB format: reading every version Redis and Valkey write (see docs/rdb-format.md).
//!
//! Owns the file format and nothing else: the header and its dialect (REDIS vs VALKEY magic,
//! which decides what types 22/23 and opcode 243 mean), the opcodes, every object type and
//! its packed inner encodings, the CRC-64 trailer. The reader streams: it holds one value
//! at a time, so a file of any size is read in memory bounded by its largest value.
//!
//! It must never panic or allocate from an unchecked length on any input, and never guess:
//! a version, opcode or type it does not know is an error naming it, with the byte offset.

mod blob;
pub mod collect;
pub mod crc;
pub mod error;
mod frame;
mod hash_ttl;
pub mod input;
mod key_meta;
pub mod lzf;
mod object;
pub mod packed;
mod parser;
mod prim;
mod redis88;
mod stream;
mod stream_idmp;
pub mod value;
pub mod view;
pub mod writer;

pub use error::{ErrorKind, RdbError, Result};
pub use input::Limits;
pub use parser::{Checksum, Framed, FramedIn, Header, Item, KeyEntry, Options, RawKey, RdbReader};
pub use prim::parse_double;
pub use value::Value;

/// Which server family's meaning of the ambiguous codes applies; chosen by the magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Redis,
    Valkey,
}

/// Object type codes (the byte before a key).
pub mod types {
    pub const STRING: u8 = 0;
    pub const LIST: u8 = 1;
    pub const SET: u8 = 2;
    pub const ZSET: u8 = 3;
    pub const HASH: u8 = 4;
    pub const ZSET_2: u8 = 5;
    pub const MODULE_PRE_GA: u8 = 6;
    pub const MODULE_2: u8 = 7;
    pub const HASH_ZIPMAP: u8 = 9;
    pub const LIST_ZIPLIST: u8 = 10;
    pub const SET_INTSET: u8 = 11;
    pub const ZSET_ZIPLIST: u8 = 12;
    pub const HASH_ZIPLIST: u8 = 13;
    pub const LIST_QUICKLIST: u8 = 14;
    pub const STREAM_LISTPACKS: u8 = 15;
    pub const HASH_LISTPACK: u8 = 16;
    pub const ZSET_LISTPACK: u8 = 17;
    pub const LIST_QUICKLIST_2: u8 = 18;
    pub const STREAM_LISTPACKS_2: u8 = 19;
    pub const SET_LISTPACK: u8 = 20;
    pub const STREAM_LISTPACKS_3: u8 = 21;
    /// Redis: 7.4 release-candidate hash with field TTLs. Valkey: HASH_2 (9.0+).
    pub const T22: u8 = 22;
    /// Redis: 7.4 release-candidate listpack hash with field TTLs. Valkey: unused so far.
    pub const T23: u8 = 23;
    pub const HASH_METADATA: u8 = 24;
    pub const HASH_LISTPACK_EX: u8 = 25;
    pub const STREAM_LISTPACKS_4: u8 = 26;
    pub const STREAM_LISTPACKS_5: u8 = 27;
    pub const ARRAY: u8 = 28;
    pub const HASH_TMPL_LP: u8 = 29;
    pub const HASH_TMPL_LP_REF: u8 = 30;
    pub const HASH_TMPL_ARRAY: u8 = 31;
    pub const HASH_TMPL_ARRAY_REF: u8 = 32;
    pub const GCRA: u8 = 33;
}

/// Opcodes (the byte values above the object types).
pub mod opcodes {
    /// Redis: HASH_TEMPLATE (8.10+). Valkey: UPDATE (unreleased).
    pub const OP242: u8 = 242;
    /// Redis: KEY_META (8.6+). Valkey: SLOT_IMPORT (9.0+).
    pub const OP243: u8 = 243;
    pub const SLOT_INFO: u8 = 244;
    pub const FUNCTION2: u8 = 245;
    pub const FUNCTION_PRE_GA: u8 = 246;
    pub const MODULE_AUX: u8 = 247;
    pub const IDLE: u8 = 248;
    pub const FREQ: u8 = 249;
    pub const AUX: u8 = 250;
    pub const RESIZEDB: u8 = 251;
    pub const EXPIRETIME_MS: u8 = 252;
    pub const EXPIRETIME: u8 = 253;
    pub const SELECTDB: u8 = 254;
    pub const EOF: u8 = 255;
}

/// Human name of a type or opcode byte in a dialect, for messages.
pub fn code_name(code: u8, dialect: Dialect) -> &'static str {
    use types::*;
    match (code, dialect) {
        (STRING, _) => "string",
        (LIST, _) => "list",
        (SET, _) => "set",
        (ZSET, _) => "zset",
        (HASH, _) => "hash",
        (ZSET_2, _) => "zset2",
        (MODULE_PRE_GA, _) => "module (pre-GA)",
        (MODULE_2, _) => "module",
        (HASH_ZIPMAP, _) => "hash zipmap",
        (LIST_ZIPLIST, _) => "list ziplist",
        (SET_INTSET, _) => "set intset",
        (ZSET_ZIPLIST, _) => "zset ziplist",
        (HASH_ZIPLIST, _) => "hash ziplist",
        (LIST_QUICKLIST, _) => "list quicklist",
        (STREAM_LISTPACKS, _) => "stream listpacks",
        (HASH_LISTPACK, _) => "hash listpack",
        (ZSET_LISTPACK, _) => "zset listpack",
        (LIST_QUICKLIST_2, _) => "list quicklist 2",
        (STREAM_LISTPACKS_2, _) => "stream listpacks 2",
        (SET_LISTPACK, _) => "set listpack",
        (STREAM_LISTPACKS_3, _) => "stream listpacks 3",
        (T22, Dialect::Redis) => "hash metadata (7.4 pre-GA)",
        (T22, Dialect::Valkey) => "hash 2 (Valkey)",
        (T23, Dialect::Redis) => "hash listpack ex (7.4 pre-GA)",
        (T23, Dialect::Valkey) => "path hash (Valkey)",
        (HASH_METADATA, _) => "hash metadata",
        (HASH_LISTPACK_EX, _) => "hash listpack ex",
        (STREAM_LISTPACKS_4, _) => "stream listpacks 4",
        (STREAM_LISTPACKS_5, _) => "stream listpacks 5",
        (ARRAY, _) => "array",
        (HASH_TMPL_LP, _) => "hash template listpack",
        (HASH_TMPL_LP_REF, _) => "hash template listpack ref",
        (HASH_TMPL_ARRAY, _) => "hash template array",
        (HASH_TMPL_ARRAY_REF, _) => "hash template array ref",
        (GCRA, _) => "gcra",
        (opcodes::OP242, Dialect::Redis) => "HASH_TEMPLATE opcode",
        (opcodes::OP242, Dialect::Valkey) => "UPDATE opcode (unreleased Valkey)",
        (opcodes::OP243, Dialect::Redis) => "KEY_META opcode",
        (opcodes::OP243, Dialect::Valkey) => "SLOT_IMPORT opcode",
        (opcodes::SLOT_INFO, _) => "SLOT_INFO opcode",
        (opcodes::FUNCTION2, _) => "FUNCTION2 opcode",
        (opcodes::FUNCTION_PRE_GA, _) => "FUNCTION_PRE_GA opcode",
        (opcodes::MODULE_AUX, _) => "MODULE_AUX opcode",
        (opcodes::IDLE, _) => "IDLE opcode",
        (opcodes::FREQ, _) => "FREQ opcode",
        (opcodes::AUX, _) => "AUX opcode",
        (opcodes::RESIZEDB, _) => "RESIZEDB opcode",
        (opcodes::EXPIRETIME_MS, _) => "EXPIRETIME_MS opcode",
        (opcodes::EXPIRETIME, _) => "EXPIRETIME opcode",
        (opcodes::SELECTDB, _) => "SELECTDB opcode",
        (opcodes::EOF, _) => "EOF opcode",
        _ => "unassigned",
    }
}

/// Whether `code` is an object type this reader decodes, in this dialect.
pub fn is_object_type(code: u8, dialect: Dialect) -> bool {
    match dialect {
        Dialect::Redis => code <= 33 && code != 8,
        Dialect::Valkey => code <= 22 && code != 8,
    }
}

/// Decode one value from its encoded bytes (what follows the key in a file, as
/// [`writer::encode_value`] produces it), in the given dialect.
pub fn decode_value(ty: u8, bytes: &[u8], dialect: Dialect) -> Result<Value> {
    let mut inp = input::Input::new(bytes, Some(bytes.len() as u64), Limits::default());
    let v = object::read_object(&mut inp, ty, dialect, &redis88::Templates::default(), None)?;
    if !inp.at_end()? {
        return Err(inp.err(ErrorKind::invalid("value", "bytes left after the value")));
    }
    Ok(v)
}

/// [`decode_value`] of the first bytes of a value, read as a stream whose size is not
/// known: lengths are checked against the caps only, so the error is the first damage
/// a reader of the whole file would meet, or `Truncated` where the bytes end.
pub(crate) fn decode_value_prefix(ty: u8, bytes: &[u8], dialect: Dialect) -> Result<Value> {
    let mut inp = input::Input::new(bytes, None, Limits::default());
    object::read_object(&mut inp, ty, dialect, &redis88::Templates::default(), None)
}

/// One RDB string (a length and bytes, an integer, or LZF) that is all of `bytes`, as the
/// reader reads it where `what` is.
pub fn decode_string(bytes: &[u8], what: &'static str) -> Result<Vec<u8>> {
    let mut inp = input::Input::new(bytes, Some(bytes.len() as u64), Limits::default());
    let v = inp.read_string(what)?;
    if !inp.at_end()? {
        return Err(inp.err(ErrorKind::invalid(what, "bytes left after the string")));
    }
    Ok(v)
}

/// The libraries in a `FUNCTION DUMP` payload: FUNCTION2 records, then the 2-byte RDB
/// version and the CRC-64 of everything before it, both checked.
pub fn function_dump(payload: &[u8]) -> Result<Vec<Vec<u8>>> {
    let n = payload.len();
    if n < 10 {
        return Err(RdbError::new(
            0,
            ErrorKind::invalid("function dump", "shorter than its footer"),
        ));
    }
    let (body, footer) = payload.split_at(n - 10);
    let stored = u64::from_le_bytes(footer[2..10].try_into().unwrap_or([0; 8]));
    let computed = crc::crc64(&payload[..n - 8]);
    if stored != computed {
        return Err(RdbError::new(
            (n - 8) as u64,
            ErrorKind::Checksum { stored, computed },
        ));
    }
    let mut inp = input::Input::new(body, Some(body.len() as u64), Limits::default());
    let mut out = Vec::new();
    while !inp.at_end()? {
        let op = inp.read_u8("function dump record")?;
        if op != opcodes::FUNCTION2 {
            return Err(inp.err(ErrorKind::UnknownType(op, code_name(op, Dialect::Redis))));
        }
        out.push(inp.read_string("function library code")?);
    }
    Ok(out)
}
