//! The RDB writer: streams records to any `Write` with the CRC computed on the way.
//!
//! Owns the byte layout of what we write and the choice of encodings for a target server
//! (see [`target`]). It must never write what the target cannot load: a value the target
//! cannot represent (hash field TTLs for Redis 7.0, functions for 6.2, …) is a
//! [`WriteError::Unrepresentable`] naming the key, never a silent loss.

pub(crate) mod encode;
mod object;
pub mod packed;
mod stream;
pub mod target;

use std::io::Write;

use super::crc::Crc64;
use super::value::Value;
pub use target::Target;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("key {key}: {what} cannot be written for {target}")]
    Unrepresentable {
        key: String,
        what: String,
        target: String,
    },
    #[error("{what} cannot be written for {target}")]
    Unsupported { what: String, target: String },
}

#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// LZF-compress strings longer than 20 bytes when it saves space (`rdbcompression`).
    pub compress: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { compress: true }
    }
}

/// One key to write, borrowed from wherever the data lives.
pub struct KeyRecord<'a> {
    pub key: &'a [u8],
    pub value: &'a Value,
    pub expire_ms: Option<i64>,
    pub idle: Option<u64>,
    pub freq: Option<u8>,
    /// Redis 8.6+ key metadata, opaque (class spec, raw module-format value).
    pub meta: &'a [(u32, Vec<u8>)],
    /// The type byte the value had in its source file, when it came from one. A sorted
    /// set stored plain there is written plain here too, so that the target converts it
    /// to its compact form with its own rules (servers differ, e.g. on -0 scores), exactly
    /// as it would when loading the source.
    pub source_type: Option<u8>,
}

impl<'a> From<&'a super::KeyEntry> for KeyRecord<'a> {
    /// A key as a file held it, its source type kept.
    fn from(k: &'a super::KeyEntry) -> Self {
        KeyRecord {
            key: &k.key,
            value: &k.value,
            expire_ms: k.expire_ms,
            idle: k.idle,
            freq: k.freq,
            meta: &k.meta,
            source_type: Some(k.rdb_type),
        }
    }
}

const FLUSH_AT: usize = 64 * 1024;

/// Encode one value for `target` on its own (no key, no hints): its type byte and bytes,
/// which [`RdbWriter::key_encoded`] can later write as they are.
pub fn encode_value(
    rec: &KeyRecord,
    target: &Target,
    opts: WriteOptions,
) -> Result<(u8, Vec<u8>), WriteError> {
    let mut buf = Vec::new();
    let ty = object::write_value(&mut buf, rec, target, opts)?;
    Ok((ty, buf))
}

pub struct RdbWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    crc: Crc64,
    written: u64,
    target: Target,
    opts: WriteOptions,
}

impl<W: Write> RdbWriter<W> {
    /// Start a file: writes the magic for `target`.
    pub fn new(out: W, target: Target, opts: WriteOptions) -> Result<Self, WriteError> {
        let mut w = RdbWriter {
            out,
            buf: Vec::with_capacity(FLUSH_AT * 2),
            crc: Crc64::new(),
            written: 0,
            target,
            opts,
        };
        w.buf.extend_from_slice(w.target.magic().as_bytes());
        Ok(w)
    }

    pub fn target(&self) -> Target {
        self.target
    }

    /// Bytes produced so far.
    pub fn written(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    fn maybe_flush(&mut self) -> Result<(), WriteError> {
        if self.buf.len() >= FLUSH_AT {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), WriteError> {
        self.crc.update(&self.buf);
        self.out.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    pub fn aux(&mut self, key: &[u8], value: &[u8]) -> Result<(), WriteError> {
        self.buf.push(super::opcodes::AUX);
        encode::string(&mut self.buf, key, false);
        encode::string(&mut self.buf, value, false);
        self.maybe_flush()
    }

    /// A function library (FUNCTION2), written before the databases.
    pub fn function(&mut self, code: &[u8]) -> Result<(), WriteError> {
        if !self.target.functions() {
            return Err(WriteError::Unsupported {
                what: "functions".into(),
                target: self.target.server.to_string(),
            });
        }
        self.buf.push(super::opcodes::FUNCTION2);
        encode::string(&mut self.buf, code, self.opts.compress);
        self.maybe_flush()
    }

    /// Module aux data, passed through byte for byte.
    pub fn module_aux(&mut self, raw: &[u8]) -> Result<(), WriteError> {
        self.buf.push(super::opcodes::MODULE_AUX);
        self.buf.extend_from_slice(raw);
        self.maybe_flush()
    }

    /// Switch database.
    pub fn select_db(&mut self, db: u64) -> Result<(), WriteError> {
        self.buf.push(super::opcodes::SELECTDB);
        encode::len(&mut self.buf, db);
        self.maybe_flush()
    }

    /// Size hints for the current database (RESIZEDB), written right after `select_db`.
    pub fn resize_db(&mut self, keys: u64, expires: u64) -> Result<(), WriteError> {
        self.buf.push(super::opcodes::RESIZEDB);
        encode::len(&mut self.buf, keys);
        encode::len(&mut self.buf, expires);
        self.maybe_flush()
    }

    /// One key. Returns `Ok(false)` for an empty collection, which servers drop on load
    /// and which is therefore not written.
    pub fn key(&mut self, rec: &KeyRecord) -> Result<bool, WriteError> {
        if rec.value.is_empty_collection() {
            return Ok(false);
        }
        let start = self.buf.len();
        let r = object::write_key(&mut self.buf, rec, &self.target, self.opts);
        if let Err(e) = r {
            self.buf.truncate(start);
            return Err(e);
        }
        self.maybe_flush()?;
        Ok(true)
    }

    /// One key whose value is already encoded for this target (`ty` and `payload` as
    /// [`encode_value`] produced them): the hints of `rec` are written, its value ignored.
    pub fn key_encoded(
        &mut self,
        rec: &KeyRecord,
        ty: u8,
        payload: &[u8],
    ) -> Result<(), WriteError> {
        self.key_start(rec, ty)?;
        self.buf.extend_from_slice(payload);
        self.maybe_flush()
    }

    /// [`Self::key_encoded`] with the value's strings LZF-compressed as [`Self::key`] writes
    /// them, without decoding the value: for the types whose value is strings only (a
    /// string; a listpack, ziplist, zipmap or intset blob; a quicklist of either; a plain
    /// list, set, hash or sorted set).
    /// `Ok(false)`: another type, or a payload that is not what its type says; nothing is
    /// written then.
    pub fn key_encoded_compressed(
        &mut self,
        rec: &KeyRecord,
        ty: u8,
        payload: &[u8],
    ) -> Result<bool, WriteError> {
        use crate::rdb::types::*;
        let mut body = Vec::with_capacity(payload.len());
        let whole = match ty {
            STRING | HASH_ZIPMAP | LIST_ZIPLIST | SET_INTSET | ZSET_ZIPLIST | HASH_ZIPLIST
            | HASH_LISTPACK | ZSET_LISTPACK | SET_LISTPACK => {
                encode::recompress_string(&mut body, payload) == Some(payload.len())
            }
            LIST | SET => elements(&mut body, payload, 1, false) == Some(payload.len()),
            HASH => elements(&mut body, payload, 2, false) == Some(payload.len()),
            ZSET_2 => elements(&mut body, payload, 1, true) == Some(payload.len()),
            LIST_QUICKLIST => quicklist(&mut body, payload, false) == Some(payload.len()),
            LIST_QUICKLIST_2 => quicklist(&mut body, payload, true) == Some(payload.len()),
            _ => false,
        };
        if !whole {
            return Ok(false);
        }
        self.key_encoded(rec, ty, &body)?;
        Ok(true)
    }

    /// Start a key whose value the caller writes piece by piece ([`Self::put_len`],
    /// [`Self::put_string`], [`Self::put_double`]): its hints, `ty` and the key. For big
    /// values held element by element, so that no whole copy is ever built.
    pub fn key_start(&mut self, rec: &KeyRecord, ty: u8) -> Result<(), WriteError> {
        let start = self.buf.len();
        if let Err(e) = object::write_hints(&mut self.buf, rec, &self.target) {
            self.buf.truncate(start);
            return Err(e);
        }
        self.buf.push(ty);
        encode::string(&mut self.buf, rec.key, self.opts.compress);
        self.maybe_flush()
    }

    pub fn put_len(&mut self, n: u64) -> Result<(), WriteError> {
        encode::len(&mut self.buf, n);
        self.maybe_flush()
    }

    pub fn put_string(&mut self, s: &[u8]) -> Result<(), WriteError> {
        encode::string(&mut self.buf, s, self.opts.compress);
        self.maybe_flush()
    }

    pub fn put_double(&mut self, d: f64) -> Result<(), WriteError> {
        encode::binary_double(&mut self.buf, d);
        self.maybe_flush()
    }

    /// A list key as a quicklist of listpack nodes (targets with listpacks), from its
    /// elements: `items` is walked twice (once to count the nodes), never collected.
    pub fn key_list<'a, I>(
        &mut self,
        rec: &KeyRecord,
        items: impl Fn() -> I,
    ) -> Result<(), WriteError>
    where
        I: Iterator<Item = &'a [u8]>,
    {
        let mut nodes = 0u64;
        let _ = object::listpack_nodes::<()>(items(), |_| {
            nodes += 1;
            Ok(())
        });
        self.key_start(rec, super::types::LIST_QUICKLIST_2)?;
        self.put_len(nodes)?;
        object::listpack_nodes(items(), |n| {
            self.put_len(2)?; // PACKED container
            self.put_string(&n)
        })
    }

    /// A stream key from its metadata (`head`, whose `entries` are not read) and its
    /// entries already grouped into nodes, each written as one RDB node: a big stream is
    /// never built whole. `first_entry` is the first live ID.
    pub fn key_stream<'a, N, E>(
        &mut self,
        rec: &KeyRecord,
        head: &super::value::Stream,
        first_entry: Option<super::value::StreamId>,
        nodes: N,
    ) -> Result<(), WriteError>
    where
        N: ExactSizeIterator<Item = E>,
        E: Iterator<Item = super::value::EntryRef<'a>>,
    {
        let format =
            stream::format(head, &self.target).map_err(|what| WriteError::Unrepresentable {
                key: super::error::escape_key(rec.key),
                what,
                target: self.target.server.to_string(),
            })?;
        self.key_start(rec, stream::type_byte(format))?;
        self.put_len(nodes.len() as u64)?;
        for n in nodes {
            stream::put_node(&mut self.buf, stream::node(n), self.opts);
            self.maybe_flush()?;
        }
        stream::tail(&mut self.buf, head, first_entry, format, self.opts);
        self.maybe_flush()
    }

    /// End the file: EOF opcode and CRC-64; returns the writer and the total size.
    pub fn finish(mut self) -> Result<(W, u64), WriteError> {
        self.buf.push(super::opcodes::EOF);
        self.crc.update(&self.buf);
        let crc = self.crc.value();
        self.out.write_all(&self.buf)?;
        self.out.write_all(&crc.to_le_bytes())?;
        self.written += self.buf.len() as u64 + 8;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

/// A quicklist copied with its nodes' strings recompressed: the node count, then per node
/// its container kind (type 18 only: `containers`) and its blob. The bytes it took in `p`.
fn quicklist(buf: &mut Vec<u8>, p: &[u8], containers: bool) -> Option<usize> {
    let (nodes, mut at) = encode::copy_len(buf, p)?;
    for _ in 0..nodes {
        if containers {
            at += encode::copy_len(buf, p.get(at..)?)?.1;
        }
        at += encode::recompress_string(buf, p.get(at..)?)?;
    }
    Some(at)
}

/// A plain collection copied with its strings recompressed: the count, then per element
/// `strings` strings and (a sorted set's score) 8 bytes of binary double. The bytes it
/// took in `p`.
fn elements(buf: &mut Vec<u8>, p: &[u8], strings: usize, double: bool) -> Option<usize> {
    let (n, mut at) = encode::copy_len(buf, p)?;
    for _ in 0..n {
        for _ in 0..strings {
            at += encode::recompress_string(buf, p.get(at..)?)?;
        }
        if double {
            buf.extend_from_slice(p.get(at..at + 8)?);
            at += 8;
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::value::HashField;
    use crate::rdb::{Item, Options, RdbReader};

    /// Values held encoded (uncompressed, as a keyspace keeps them) and written by
    /// `key_encoded_compressed` read back as the same values, with their strings compressed.
    #[test]
    fn encoded_values_are_written_compressed_and_read_back() {
        let long = |i: usize| format!("{i:0>40}").into_bytes();
        let values = [
            Value::String(vec![b'a'; 100]),
            Value::String(b"12345".to_vec()),
            Value::List((0..300).map(long).collect()),
            Value::Set((0..10).map(|i: i32| i.to_string().into_bytes()).collect()),
            Value::Set((0..10).map(long).collect()),
            Value::SortedSet((0..10).map(|i| (long(i), i as f64 + 0.5)).collect()),
            Value::Hash(
                (0..10)
                    .map(|i| HashField {
                        field: long(i),
                        value: long(i + 1),
                        expire_ms: None,
                    })
                    .collect(),
            ),
        ];
        for server in ["redis-6.2", "redis-7.0", "redis-7.4", "valkey-9.1"] {
            let target = Target::for_server(server.parse().unwrap()).unwrap();
            let mut w = RdbWriter::new(Vec::new(), target, WriteOptions::default()).unwrap();
            w.select_db(0).unwrap();
            let mut held_bytes = 0;
            for (i, v) in values.iter().enumerate() {
                let key = format!("k{i}").into_bytes();
                let rec = KeyRecord {
                    key: &key,
                    value: v,
                    expire_ms: None,
                    idle: None,
                    freq: None,
                    meta: &[],
                    source_type: None,
                };
                let (ty, held) =
                    encode_value(&rec, &target, WriteOptions { compress: false }).unwrap();
                held_bytes += held.len();
                assert!(
                    w.key_encoded_compressed(&rec, ty, &held).unwrap(),
                    "{server}: type {ty} not taken"
                );
                // A payload cut short is refused, nothing written.
                assert!(!w
                    .key_encoded_compressed(&rec, ty, &held[..held.len() - 1])
                    .unwrap());
            }
            let (file, len) = w.finish().unwrap();
            assert!(
                (len as usize) < held_bytes,
                "{server}: {len} B written for {held_bytes} B held"
            );
            let mut r = RdbReader::new(&file[..], Some(len), Options::default()).unwrap();
            let mut got = Vec::new();
            while let Some(item) = r.next_item().unwrap() {
                if let Item::Key(k) = item {
                    got.push(k.value);
                }
            }
            assert_eq!(got, values, "{server}");
        }
    }
}
