//! Keys the reader framed into a batch's arena ([`crate::rdb::RawKey`]): names and values
//! read where they lie in the file's bytes, a batch at a time, with no allocation per key
//! — strings are mixed in as one-element lists, collections as
//! [`super::framed::digest_many`] digests them.
//!
//! Owns the reading of a raw key. It must give exactly the digest and the errors a decoded
//! key gives: what [`crate::rdb::view`] declines (an encoding it does not read, or a
//! damaged value) is decoded by [`decode_value`] into a [`KeyEntry`] for the caller to
//! digest, its error the reader's, at its place in the file.

use std::borrow::Cow;

use crate::rdb::packed::Elem;
use crate::rdb::types::STRING;
use crate::rdb::view::{self, InScratch, Piece, Pieces, Scratch};
use crate::rdb::{decode_string, decode_value, Dialect, KeyEntry, RawKey, RdbError};

use super::dataset::{Body, DatasetDigest};
use super::error::DigestError;
use super::framed::digest_many;

/// A raw key's value as read in place.
enum Read<'a> {
    String(Piece<'a>),
    /// A compressed string, decompressed into the scratch at this range.
    Scratched(std::ops::Range<usize>),
    Collection(Pieces<'a>),
    /// The view declined it: decode it.
    Declined,
}

/// Fold the raw `keys` (in file order, their bytes in `arena`) into `d`: the keys whose
/// values had to be decoded (to be digested by the caller), and the first key that failed
/// (at its offset) if one did; the keys after it are left out.
#[allow(clippy::vec_box)]
pub(super) fn add_raw(
    arena: &[u8],
    keys: &[RawKey],
    d: &mut DatasetDigest,
) -> (Vec<Box<KeyEntry>>, Option<(u64, DigestError)>) {
    let mut scratch = SCRATCH.take();
    scratch.clear();
    let out = add_raw_in(arena, keys, d, &mut scratch);
    // A big value's room is not held for the rest of the thread's life.
    if scratch.room_held() <= SCRATCH_KEPT {
        SCRATCH.set(scratch);
    }
    out
}

/// The most decompression room a thread keeps between batches.
const SCRATCH_KEPT: usize = 8 << 20;

thread_local! {
    /// Where a worker's compressed strings are decompressed, batch after batch.
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

#[allow(clippy::vec_box)]
fn add_raw_in(
    arena: &[u8],
    keys: &[RawKey],
    d: &mut DatasetDigest,
    scratch: &mut Scratch,
) -> (Vec<Box<KeyEntry>>, Option<(u64, DigestError)>) {
    let mut failed = None;
    let mut names: Vec<Cow<'_, [u8]>> = Vec::with_capacity(keys.len());
    let mut reads = Vec::with_capacity(keys.len());
    for k in keys {
        let Some(bytes) = arena.get(k.name.clone()) else {
            failed = Some((k.offset, outside(k)));
            break;
        };
        let name = match view::string(bytes) {
            Some(Piece::Str(s)) => Cow::Borrowed(s),
            Some(Piece::Owned(v)) => Cow::Owned(v),
            Some(Piece::Int(i)) => Cow::Owned(i.to_string().into_bytes()),
            // The reader checked the name; decode it for its own error if it is damaged.
            None => match decode_string(bytes, "key name") {
                Ok(v) => Cow::Owned(v),
                Err(e) => {
                    failed = Some((k.offset, DigestError::Read(e)));
                    break;
                }
            },
        };
        let Some(value) = arena.get(k.value.clone()) else {
            failed = Some((k.offset, outside(k)));
            break;
        };
        let read = if k.rdb_type == STRING {
            match view::string_in(value, scratch) {
                Some(InScratch::Piece(p)) => Read::String(p),
                Some(InScratch::At(at)) => Read::Scratched(at),
                None => Read::Declined,
            }
        } else if view::viewed(k.rdb_type) {
            view::pieces(k.rdb_type, value).map_or(Read::Declined, Read::Collection)
        } else {
            Read::Declined
        };
        names.push(name);
        reads.push(read);
    }
    // Elements: a string's one element in a shared vector, a collection's its own.
    let scratch = &*scratch;
    let strings: Vec<Elem<'_>> = reads
        .iter()
        .filter_map(|r| match r {
            Read::String(Piece::Str(s)) => Some(Elem::Str(s)),
            Read::String(Piece::Owned(v)) => Some(Elem::Str(v)),
            Read::String(Piece::Int(i)) => Some(Elem::Int(*i)),
            Read::Scratched(at) => Some(Elem::Str(scratch.get(at.clone()))),
            _ => None,
        })
        .collect();
    let mut collections: Vec<(usize, Vec<Elem<'_>>)> = Vec::new();
    let mut declined = Vec::new();
    let mut viewed: Vec<(usize, Option<usize>)> = Vec::with_capacity(reads.len());
    for (i, r) in reads.iter().enumerate() {
        match r {
            Read::String(_) | Read::Scratched(_) => viewed.push((i, None)),
            Read::Collection(p) => match p.elements() {
                Some(e) => {
                    viewed.push((i, Some(collections.len())));
                    collections.push((i, e));
                }
                None => declined.push(i),
            },
            Read::Declined => declined.push(i),
        }
    }
    // Decode what the view declined, in file order; stop at the first failure.
    let mut decoded = Vec::with_capacity(declined.len());
    let mut limit = keys.len().min(names.len());
    for &i in &declined {
        let k = &keys[i];
        match decode_value(k.rdb_type, &arena[k.value.clone()], Dialect::Redis) {
            Ok(value) => decoded.push(Box::new(KeyEntry {
                db: k.db,
                key: names[i].to_vec(),
                expire_ms: k.expire_ms,
                idle: None,
                freq: None,
                meta: Vec::new(),
                rdb_type: k.rdb_type,
                value,
                offset: k.offset,
            })),
            Err(mut e) => {
                e.offset += k.value_at;
                let e = e.with_key(&names[i]);
                if failed.as_ref().is_none_or(|(at, _)| k.offset < *at) {
                    failed = Some((k.offset, DigestError::Read(e)));
                }
                limit = i;
                break;
            }
        }
    }
    let mut s = 0;
    let items: Vec<(&[u8], u8, &[Elem<'_>])> = viewed
        .iter()
        .take_while(|(i, _)| *i < limit)
        .map(|&(i, c)| {
            let elems = match c {
                Some(c) => &collections[c].1[..],
                None => {
                    s += 1;
                    &strings[s - 1..s]
                }
            };
            (&names[i][..], keys[i].rdb_type, elems)
        })
        .collect();
    let (rules, now_ms) = (*d.rules(), d.now_ms());
    let accs = digest_many(&items, &rules, now_ms);
    let bodies = viewed.iter().zip(accs).map(|(&(i, _), acc)| Body {
        db: keys[i].db,
        expire_ms: keys[i].expire_ms,
        offset: keys[i].offset,
        name: &names[i],
        acc,
    });
    if let Err((at, e)) = d.add_bodies(bodies) {
        if failed.as_ref().is_none_or(|(f, _)| at < *f) {
            failed = Some((at, e));
        }
    }
    (decoded, failed)
}

fn outside(k: &RawKey) -> DigestError {
    DigestError::Read(RdbError::new(
        k.offset,
        crate::rdb::ErrorKind::invalid("framed key", "outside its batch's bytes"),
    ))
}

#[cfg(test)]
mod tests {
    use crate::digest::{digest_rdb, DigestOptions, ParallelDigest};
    use crate::rdb::value::HashField;
    use crate::rdb::writer::{KeyRecord, RdbWriter, Target, WriteOptions};
    use crate::rdb::{Item, KeyEntry, Options, RdbReader, Value};

    const NOW: i64 = 1_700_000_000_000;

    /// A file of every framed type, with integer, plain and compressible names, expiries
    /// (one past), and two databases.
    fn file() -> Vec<u8> {
        let target = Target::for_server("redis-7.0.0".parse().expect("version")).expect("target");
        let mut w = RdbWriter::new(Vec::new(), target, WriteOptions::default()).expect("writer");
        w.aux(b"redis-ver", b"7.0.15").expect("aux");
        let pad = "v".repeat(70);
        for db in [0u64, 3] {
            w.select_db(db).expect("select");
            for i in 0..1500u64 {
                let key = match i % 3 {
                    0 => format!("{}", i * 7),
                    1 => format!("k:{i}"),
                    _ => format!("{pad}:{i}"),
                };
                let n = (i % 40 + 1) as usize;
                let strs = |n: usize| -> Vec<Vec<u8>> {
                    (0..n)
                        .map(|j| match j % 3 {
                            0 => format!("{}", i as usize * 13 + j).into_bytes(),
                            1 => format!("e{j}").into_bytes(),
                            _ => format!("{pad}{j}").into_bytes(),
                        })
                        .collect()
                };
                let value = match i % 7 {
                    0 => Value::String(format!("{pad}{i}").into_bytes()),
                    1 => Value::String(format!("{}", i as i64 - 700).into_bytes()),
                    2 => Value::List(strs(if i % 11 == 0 { 300 } else { n })),
                    3 => Value::Set(strs(n)),
                    4 => Value::Set((0..n).map(|j| format!("{}", j * 3).into_bytes()).collect()),
                    5 => Value::Hash(
                        strs(n)
                            .into_iter()
                            .zip(strs(n).into_iter().rev())
                            .map(|(field, value)| HashField {
                                field,
                                value,
                                expire_ms: None,
                            })
                            .collect(),
                    ),
                    _ => Value::SortedSet(
                        strs(n)
                            .into_iter()
                            .enumerate()
                            .map(|(j, m)| (m, j as f64 * 1.5 - 3.0))
                            .collect(),
                    ),
                };
                let expire_ms = match i % 13 {
                    0 => Some(NOW + 1000),
                    5 => Some(NOW - 1000),
                    _ => None,
                };
                let e = KeyEntry {
                    db,
                    key: key.into_bytes(),
                    expire_ms,
                    idle: None,
                    freq: None,
                    meta: Vec::new(),
                    rdb_type: 0,
                    value,
                    offset: 0,
                };
                w.key(&KeyRecord {
                    source_type: None,
                    ..KeyRecord::from(&e)
                })
                .expect("key");
            }
        }
        w.finish().expect("finish").0
    }

    /// The digest through the raw path (`workers` threads), as text or the error's line.
    fn raw(bytes: &[u8], workers: usize) -> String {
        let mut opts = DigestOptions::new(NOW);
        opts.workers = workers;
        let r = RdbReader::new(bytes, Some(bytes.len() as u64), Options::default())
            .map_err(|e| e.to_string())
            .and_then(|r| digest_rdb(r, &opts, |_| {}).map_err(|e| e.to_string()));
        match r {
            Ok(d) => format!(
                "{} {} {}",
                super::super::mix::hex(&d.digest),
                d.keys,
                d.dropped
            ),
            Err(e) => e,
        }
    }

    /// The same from every key decoded by the reader, one by one.
    fn decoded(bytes: &[u8]) -> String {
        let run = || -> Result<String, String> {
            let mut r = RdbReader::new(bytes, Some(bytes.len() as u64), Options::default())
                .map_err(|e| e.to_string())?;
            let rules = crate::digest::Rules::for_target("redis-7.0.15".parse().expect("v"))
                .map_err(|e| e.to_string())?;
            let mut d = ParallelDigest::new(rules, NOW, 0);
            while let Some(item) = r.next_item().map_err(|e| e.to_string())? {
                if let Item::Key(k) = item {
                    d.add(k).map_err(|e| e.to_string())?;
                }
            }
            let d = d.finish().map_err(|e| e.to_string())?;
            Ok(format!(
                "{} {} {}",
                super::super::mix::hex(&d.finish()),
                d.keys(),
                d.dropped()
            ))
        };
        run().unwrap_or_else(|e| e)
    }

    #[test]
    fn raw_keys_digest_and_fail_as_decoded_keys_do() {
        let bytes = file();
        let want = decoded(&bytes);
        assert!(!want.contains("error"), "{want}");
        assert_eq!(raw(&bytes, 0), want, "on the caller's thread");
        assert_eq!(raw(&bytes, 2), want, "on two workers");
        // Damage: a byte flipped three ways at spread positions; cuts. Where both paths
        // read past the damage they agree on the digest; where they fail, on the line
        // (the CRC catches what no reader sees: compare only what precedes it).
        let mut failures = 0;
        for at in (9..bytes.len() - 10).step_by(bytes.len() / 120) {
            for mask in [0x01u8, 0x40, 0xff] {
                let mut bad = bytes.clone();
                bad[at] ^= mask;
                let (a, b) = (raw(&bad, 2), decoded(&bad));
                if a.contains("checksum") || b.contains("checksum") {
                    continue;
                }
                failures += usize::from(a != want);
                assert_eq!(a, b, "byte {at} ^ {mask:#x}");
            }
            let (a, b) = (raw(&bytes[..at], 2), decoded(&bytes[..at]));
            assert_eq!(a, b, "cut at {at}");
        }
        assert!(failures > 40, "damage was seen {failures} times");
    }
}
