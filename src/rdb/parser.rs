//! The top-level RDB loop: header, opcodes, keys, trailer, as a pull-based reader.
//!
//! Owns the order of records and the state that spans them (current database, the expiry
//! and LRU/LFU hints that precede a key). It hands out one [`Item`] at a time and keeps
//! nothing of earlier ones, so memory stays bounded by the largest single value. It must
//! never guess at an unknown version or code: those are errors naming them.

use std::io::Read;

use super::error::{ErrorKind, RdbError, Result};
use super::input::{Input, Limits};
use super::object::{read_object, skip_module_payload};
use super::opcodes::*;
use super::value::{ModuleValue, Value};
use super::Dialect;

/// Newest versions this reader knows, per magic.
pub const MAX_REDIS_VERSION: u32 = 15;
pub const MIN_VALKEY_VERSION: u32 = 80;
pub const MAX_VALKEY_VERSION: u32 = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub dialect: Dialect,
    pub version: u32,
}

impl Header {
    pub fn magic(&self) -> &'static str {
        match self.dialect {
            Dialect::Redis => "REDIS",
            Dialect::Valkey => "VALKEY",
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub limits: Limits,
    /// Read versions newer than this reader knows, as Valkey's `rdb-version-check relaxed`
    /// does: the layout of every record is still checked and an unknown code is still an
    /// error, but the version number alone does not stop the read.
    pub relaxed_version: bool,
    /// Stop right after the checksum instead of reading on to count trailing bytes: for
    /// inputs that go on after the file (a replication link).
    pub stop_after_trailer: bool,
}

/// One key with everything that preceded it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub db: u64,
    pub key: Vec<u8>,
    /// Absolute expiry in Unix milliseconds.
    pub expire_ms: Option<i64>,
    /// LRU idle time in seconds (IDLE opcode).
    pub idle: Option<u64>,
    /// LFU counter (FREQ opcode).
    pub freq: Option<u8>,
    /// Redis 8.6+ key metadata records (KEY_META), opaque: (class spec, raw bytes).
    pub meta: Vec<(u32, Vec<u8>)>,
    /// The type byte as found in the file (the encoding the writer chose).
    pub rdb_type: u8,
    pub value: Value,
    /// Offset of the record's first byte.
    pub offset: u64,
}

impl KeyEntry {
    /// Whether a server loading the file now, as a master, holds this key once settled:
    /// its expiry has not passed, it is not an empty collection, and a hash keeps at least
    /// one field whose own TTL has not passed. Valkey 9 drops such hashes while loading;
    /// Redis 7.4+ loads them and deletes them in its first active-expiry cycle (~100 ms,
    /// measured, see docs/decisions.md), so both end up where `digest` says.
    pub fn loadable(&self, now_ms: i64) -> bool {
        if matches!(self.expire_ms, Some(t) if t < now_ms) {
            return false;
        }
        match &self.value {
            Value::Hash(fields) => fields
                .iter()
                .any(|f| f.expire_ms.is_none_or(|t| t as i64 >= now_ms)),
            v => !v.is_empty_collection(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Checksum {
    /// The trailer's value; `None` before RDB 5, when the file has no trailer.
    pub stored: Option<u64>,
    pub computed: u64,
}

impl Checksum {
    /// A zero trailer means the writer had `rdbchecksum no`: nothing to compare.
    pub fn ok(&self) -> bool {
        match self.stored {
            None | Some(0) => true,
            Some(s) => s == self.computed,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Aux {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    SelectDb(u64),
    ResizeDb {
        db_size: u64,
        expires_size: u64,
    },
    SlotInfo {
        slot: u64,
        size: u64,
        expires_size: u64,
    },
    /// Valkey 9 SLOT_IMPORT: a slot-import job and its slot ranges.
    SlotImport {
        job: Vec<u8>,
        ranges: Vec<(u64, u64)>,
    },
    ModuleAux {
        module: ModuleValue,
        when: u64,
    },
    /// A function library's source code (FUNCTION2).
    Function {
        code: Vec<u8>,
    },
    /// A function in the Redis 7.0 release-candidate layout (FUNCTION_PRE_GA).
    FunctionPreGa {
        name: Vec<u8>,
        engine: Vec<u8>,
        description: Option<Vec<u8>>,
        code: Vec<u8>,
    },
    /// Redis 8.10 HASH_TEMPLATE: field names shared by the hashes that refer to `id`.
    HashTemplate {
        id: u64,
        fields: Vec<Vec<u8>>,
    },
    Key(Box<KeyEntry>),
    /// The EOF opcode and the trailer; `trailing` counts bytes after it (ignored by servers).
    End {
        checksum: Checksum,
        trailing: u64,
    },
}

/// The hints that precede a key (expiry, LRU, LFU, key metadata).
#[derive(Default)]
struct Pending {
    expire_ms: Option<i64>,
    idle: Option<u64>,
    freq: Option<u8>,
    meta: Vec<(u32, Vec<u8>)>,
}

pub struct RdbReader<R> {
    inp: Input<R>,
    header: Header,
    db: u64,
    pending: Pending,
    templates: super::redis88::Templates,
    done: bool,
    stop_after_trailer: bool,
    /// Hand values of the framed types over still encoded ([`Self::next_framed`]).
    frame: bool,
    /// The last key's value, framed: where it starts in the file, and its bytes.
    framed: Option<(u64, Vec<u8>)>,
}

/// What [`RdbReader::next_framed`] gives: a record, or a key whose value is still in its
/// RDB encoding (`key.value` is an empty string; decode `encoded` with
/// [`super::decode_value`] as type `key.rdb_type`; `value_at` is its offset in the file).
#[derive(Debug)]
pub enum Framed {
    Item(Item),
    Encoded {
        key: Box<KeyEntry>,
        value_at: u64,
        encoded: Vec<u8>,
    },
}

/// The error a decoding reader would have met in a value the framer failed in with `e`:
/// the framer walks lengths only, so damage inside a value it skipped (a corrupt LZF
/// string, a broken listpack) is found by decoding the bytes it read (`read`, from file
/// offset `value_at`). The decoder's error counts when it is earlier and not merely the
/// end of those bytes.
fn decoders_error(ty: u8, read: &[u8], value_at: u64, e: RdbError) -> RdbError {
    match super::decode_value_prefix(ty, read, super::Dialect::Redis) {
        Err(mut d)
            if !matches!(d.kind, ErrorKind::Truncated { .. }) && d.offset + value_at < e.offset =>
        {
            d.offset += value_at;
            d
        }
        _ => e,
    }
}

/// A key of a framed type read by [`RdbReader::next_framed_in`]: its name and value still as
/// the file encodes them, at `name` and `value` in the caller's arena (an RDB string, and
/// a value to decode as `rdb_type`).
#[derive(Debug, Clone)]
pub struct RawKey {
    pub db: u64,
    pub expire_ms: Option<i64>,
    pub rdb_type: u8,
    /// File offset of the key's type byte (as [`KeyEntry::offset`]).
    pub offset: u64,
    /// File offset of the value.
    pub value_at: u64,
    pub name: std::ops::Range<usize>,
    pub value: std::ops::Range<usize>,
}

/// What [`RdbReader::next_framed_in`] gives.
#[derive(Debug)]
pub enum FramedIn {
    Framed(Framed),
    Raw(RawKey),
}

impl<R: Read> RdbReader<R> {
    /// Read the header. `total_len` (the file size) lets every length be checked early.
    pub fn new(reader: R, total_len: Option<u64>, opts: Options) -> Result<Self> {
        let mut inp = Input::new(reader, total_len, opts.limits);
        let magic: [u8; 9] = inp.read_array("magic")?;
        let header = parse_magic(&magic, opts.relaxed_version).map_err(|k| RdbError::new(0, k))?;
        Ok(RdbReader {
            inp,
            header,
            db: 0,
            pending: Pending::default(),
            templates: Default::default(),
            done: false,
            stop_after_trailer: opts.stop_after_trailer,
            frame: false,
            framed: None,
        })
    }

    pub fn header(&self) -> Header {
        self.header
    }

    /// The underlying reader and the bytes it gave that the reader has not consumed
    /// (after [`Item::End`] with `stop_after_trailer`: whatever followed the file).
    pub fn into_parts(self) -> (R, Vec<u8>) {
        self.inp.into_parts()
    }

    pub fn offset(&self) -> u64 {
        self.inp.offset()
    }

    /// The next record, or `None` after [`Item::End`].
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        self.next_item_with(None)
    }

    /// [`Self::next_item`], except that a key of a common type comes with its value only
    /// framed, not decoded: for a caller that decodes values on other threads. The
    /// lengths are checked here; the contents are not (the decoder does).
    pub fn next_framed(&mut self) -> Result<Option<Framed>> {
        self.frame = true;
        let item = self.next_item_with(None);
        self.frame = false;
        let item = item?;
        Ok(match (item, self.framed.take()) {
            (Some(Item::Key(key)), Some((value_at, encoded))) => Some(Framed::Encoded {
                key,
                value_at,
                encoded,
            }),
            (item, _) => item.map(Framed::Item),
        })
    }

    /// [`Self::next_item`], handing a big collection's elements to `collect` as they are
    /// read when it wants them (the key then comes with an empty value).
    pub fn next_item_with(
        &mut self,
        mut collect: Option<&mut dyn super::collect::Collector>,
    ) -> Result<Option<Item>> {
        if self.done {
            return Ok(None);
        }
        let dialect = self.header.dialect;
        loop {
            let start = self.inp.offset();
            let code = self.inp.read_u8("record type")?;
            if self.hint(code)? {
                continue;
            }
            match code {
                EOF => return self.finish().map(Some),
                SELECTDB => {
                    self.db = self.inp.read_len("database number")?;
                    return Ok(Some(Item::SelectDb(self.db)));
                }
                RESIZEDB => {
                    let db_size = self.inp.read_len("RESIZEDB size")?;
                    let expires_size = self.inp.read_len("RESIZEDB expires size")?;
                    return Ok(Some(Item::ResizeDb {
                        db_size,
                        expires_size,
                    }));
                }
                SLOT_INFO => {
                    let slot = self.inp.read_len("slot id")?;
                    let size = self.inp.read_len("slot size")?;
                    let expires_size = self.inp.read_len("slot expires size")?;
                    return Ok(Some(Item::SlotInfo {
                        slot,
                        size,
                        expires_size,
                    }));
                }
                AUX => {
                    let key = self.inp.read_string("aux field name")?;
                    let value = self.inp.read_string("aux field value")?;
                    return Ok(Some(Item::Aux { key, value }));
                }
                MODULE_AUX => return self.module_aux(start).map(Some),
                FUNCTION2 => {
                    let code = self.inp.read_string("function library code")?;
                    return Ok(Some(Item::Function { code }));
                }
                FUNCTION_PRE_GA => {
                    // Redis 7.0 release candidates' layout, which 7.0 GA still loads
                    // (corpus rdbcli__filter1.rdb): name, engine, optional description, code.
                    let name = self.inp.read_string("function name")?;
                    let engine = self.inp.read_string("function engine")?;
                    let at = self.inp.offset();
                    let description = match self.inp.read_len("function description flag")? {
                        0 => None,
                        1 => Some(self.inp.read_string("function description")?),
                        f => {
                            return Err(RdbError::new(
                                at,
                                ErrorKind::invalid(
                                    "function record",
                                    format!("description flag {f}"),
                                ),
                            ))
                        }
                    };
                    let code = self.inp.read_string("function code")?;
                    return Ok(Some(Item::FunctionPreGa {
                        name,
                        engine,
                        description,
                        code,
                    }));
                }
                OP243 => match dialect {
                    Dialect::Redis => {
                        // KEY_META must sit right before the type byte.
                        self.pending.meta = super::key_meta::read(&mut self.inp)?;
                        let ty = self.inp.read_u8("record type")?;
                        return self.key(start, ty, collect.take()).map(Some);
                    }
                    Dialect::Valkey => {
                        let (job, ranges) = super::key_meta::slot_import(&mut self.inp)?;
                        return Ok(Some(Item::SlotImport { job, ranges }));
                    }
                },
                OP242 if dialect == Dialect::Redis => {
                    let (id, fields) = self.templates.read_definition(&mut self.inp)?;
                    return Ok(Some(Item::HashTemplate { id, fields }));
                }
                ty => return self.key(start, ty, collect.take()).map(Some),
            }
        }
    }

    /// Read the hint `code` opened (expiry, LRU, LFU) into the pending hints; false when
    /// `code` is not a hint.
    fn hint(&mut self, code: u8) -> Result<bool> {
        match code {
            EXPIRETIME => {
                let s = i32::from_le_bytes(self.inp.read_array("expire time")?);
                self.pending.expire_ms = Some(i64::from(s) * 1000);
            }
            EXPIRETIME_MS => self.pending.expire_ms = Some(self.inp.read_ms_time("expire time")?),
            FREQ => self.pending.freq = Some(self.inp.read_u8("LFU frequency")?),
            IDLE => self.pending.idle = Some(self.inp.read_len("LRU idle time")?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// [`Self::next_framed`], except that a key of a framed type comes as a [`RawKey`]:
    /// its name and value appended to `arena` as the file encodes them (no allocation per
    /// key). Lengths are checked here, contents by whoever reads the arena; an encoded
    /// (integer or LZF) name is decoded here too, so a damaged one is this reader's error.
    pub fn next_framed_in(&mut self, arena: &mut Vec<u8>) -> Result<Option<FramedIn>> {
        if self.done {
            return Ok(None);
        }
        loop {
            match self.inp.peek_u8()? {
                Some(code) if matches!(code, EXPIRETIME | EXPIRETIME_MS | FREQ | IDLE) => {
                    self.inp.read_u8("record type")?;
                    self.hint(code)?;
                }
                Some(ty) if super::frame::framed(ty) && self.pending.meta.is_empty() => {
                    let start = self.inp.offset();
                    self.inp.read_u8("record type")?;
                    return self
                        .raw_key(start, ty, arena)
                        .map(|k| Some(FramedIn::Raw(k)));
                }
                _ => return Ok(self.next_framed()?.map(FramedIn::Framed)),
            }
        }
    }

    fn raw_key(&mut self, start: u64, ty: u8, arena: &mut Vec<u8>) -> Result<RawKey> {
        let name_at = self.inp.offset();
        let n0 = arena.len();
        self.inp.start_recording_into(std::mem::take(arena));
        let named = super::frame::skip_string(&mut self.inp, "key name")
            .map(|()| (self.inp.recorded_len(), self.inp.offset()));
        // The error, and where the name ends if it was read.
        let r = named.map_err(|e| (e, None)).and_then(|(n1, value_at)| {
            super::frame::skip_object(&mut self.inp, ty)
                .map(|()| (n1, value_at))
                .map_err(|e| (e, Some(n1)))
        });
        *arena = self.inp.take_recording();
        let name_of = |arena: &[u8], n1: usize| {
            super::decode_string(&arena[n0..n1], "key name").map_err(|mut e| {
                e.offset += name_at;
                e
            })
        };
        let (n1, value_at) = match r {
            Ok(v) => v,
            Err((e, None)) => return Err(e),
            // A damaged name is the error; else the value's, naming the key.
            Err((e, Some(n1))) => {
                let value_at = name_at + (n1 - n0) as u64;
                let e = decoders_error(ty, &arena[n1..], value_at, e);
                return Err(match name_of(arena, n1) {
                    Ok(name) => e.with_key(&name),
                    Err(ne) => ne,
                });
            }
        };
        if arena.get(n0).is_some_and(|b| b >> 6 == 3) {
            name_of(arena, n1)?;
        }
        let p = std::mem::take(&mut self.pending);
        Ok(RawKey {
            db: self.db,
            expire_ms: p.expire_ms,
            rdb_type: ty,
            offset: start,
            value_at,
            name: n0..n1,
            value: n1..arena.len(),
        })
    }

    fn key(
        &mut self,
        start: u64,
        ty: u8,
        collect: Option<&mut dyn super::collect::Collector>,
    ) -> Result<Item> {
        let dialect = self.header.dialect;
        if !super::is_object_type(ty, dialect) {
            return Err(RdbError::new(
                self.inp.offset() - 1,
                ErrorKind::UnknownType(ty, super::code_name(ty, dialect)),
            ));
        }
        let key = self.inp.read_string("key name")?;
        let value = if self.frame && super::frame::framed(ty) {
            let value_at = self.inp.offset();
            self.inp.start_recording();
            let r = super::frame::skip_object(&mut self.inp, ty);
            let encoded = self.inp.take_recording();
            r.map_err(|e| decoders_error(ty, &encoded, value_at, e).with_key(&key))?;
            self.framed = Some((value_at, encoded));
            Value::String(Vec::new())
        } else {
            read_object(&mut self.inp, ty, dialect, &self.templates, collect)
                .map_err(|e| e.with_key(&key))?
        };
        // Hints apply to the next key only, across any records in between
        // (servers keep them through AUX, SELECTDB, … until a key is read).
        let p = std::mem::take(&mut self.pending);
        Ok(Item::Key(Box::new(KeyEntry {
            db: self.db,
            key,
            expire_ms: p.expire_ms,
            idle: p.idle,
            freq: p.freq,
            meta: p.meta,
            rdb_type: ty,
            value,
            offset: start,
        })))
    }

    fn module_aux(&mut self, start: u64) -> Result<Item> {
        self.inp.start_recording();
        let r = (|| {
            let id = self.inp.read_len("module aux id")?;
            let when_op = self.inp.read_len("module aux when opcode")?;
            if when_op != 2 {
                return Err(RdbError::new(
                    start,
                    ErrorKind::invalid(
                        "module aux",
                        format!("'when' opcode {when_op}, expected 2 (uint)"),
                    ),
                ));
            }
            let when = self.inp.read_len("module aux when")?;
            skip_module_payload(&mut self.inp)?;
            Ok((id, when))
        })();
        let raw = self.inp.take_recording();
        let (module_id, when) = r?;
        Ok(Item::ModuleAux {
            module: ModuleValue { module_id, raw },
            when,
        })
    }

    fn finish(&mut self) -> Result<Item> {
        self.done = true;
        let computed = self.inp.crc_so_far();
        let stored = if self.header.version >= 5 {
            Some(u64::from_le_bytes(self.inp.read_array("checksum")?))
        } else {
            None
        };
        let checksum = Checksum { stored, computed };
        let mut trailing = 0u64;
        while !self.stop_after_trailer && !self.inp.at_end()? {
            // Count without keeping: servers ignore what follows the trailer.
            self.inp.read_u8("trailing bytes")?;
            trailing += 1;
        }
        Ok(Item::End { checksum, trailing })
    }
}

fn parse_magic(m: &[u8; 9], relaxed: bool) -> std::result::Result<Header, ErrorKind> {
    let digits = |s: &[u8]| -> Option<u32> {
        if s.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(s).ok()?.parse().ok()
        } else {
            None
        }
    };
    let bad = || ErrorKind::BadMagic(String::from_utf8_lossy(m).into_owned());
    if &m[..5] == b"REDIS" {
        let version = digits(&m[5..]).ok_or_else(bad)?;
        if version == 0 || (version > MAX_REDIS_VERSION && !relaxed) {
            return Err(ErrorKind::UnsupportedVersion {
                magic: "REDIS",
                version,
                supported: "REDIS 1-15 and VALKEY 80",
            });
        }
        Ok(Header {
            dialect: Dialect::Redis,
            version,
        })
    } else if &m[..6] == b"VALKEY" {
        let version = digits(&m[6..]).ok_or_else(bad)?;
        if version < MIN_VALKEY_VERSION || (version > MAX_VALKEY_VERSION && !relaxed) {
            return Err(ErrorKind::UnsupportedVersion {
                magic: "VALKEY",
                version,
                supported: "REDIS 1-15 and VALKEY 80",
            });
        }
        Ok(Header {
            dialect: Dialect::Valkey,
            version,
        })
    } else {
        Err(bad())
    }
}
