//! Editing a small collection where the keyspace holds it: the entries of a listpack (a
//! hash, a set, a sorted set, a one-node list) or an intset, changed one by one, without
//! decoding every element into a value and encoding them all again.
//!
//! Owns the contract of these fast paths: an edit must leave exactly the value the decode,
//! change and store path would (the same elements, in the same order, in the same
//! encoding type), or decline before anything is stored, and the caller then takes that
//! path. Entries an edit keeps are copied as they are stored. It knows nothing of any
//! command: the families decide what to change, this file only reads and writes entries.

use std::borrow::Cow;

use crate::keyspace::{Entry, Keyspace, Packed};
use crate::rdb::packed::{listpack_entries, Elem};
use crate::rdb::writer::packed::{listpack_entry, listpack_from_entries};

/// One listpack entry: its element, and its bytes as stored (or freshly encoded).
#[derive(Clone)]
pub struct Item<'a> {
    /// The element (`None` only for an entry built from bytes this file does not keep).
    pub elem: Option<Elem<'a>>,
    raw: Cow<'a, [u8]>,
}

impl<'a> Item<'a> {
    /// An entry for `s`, encoded as the servers would (canonical integers as integers).
    pub fn new(s: &'a [u8]) -> Item<'a> {
        let mut raw = Vec::with_capacity(s.len() + 6);
        listpack_entry(s, &mut raw);
        let elem = match crate::rdb::writer::packed::canonical_int(s) {
            Some(v) => Elem::Int(v),
            None => Elem::Str(s),
        };
        Item {
            elem: Some(elem),
            raw: Cow::Owned(raw),
        }
    }

    /// An entry for bytes the caller does not keep (its element is then unknown here).
    pub fn encoded(s: &[u8]) -> Item<'a> {
        let mut raw = Vec::with_capacity(s.len() + 6);
        listpack_entry(s, &mut raw);
        Item {
            elem: None,
            raw: Cow::Owned(raw),
        }
    }

    /// Whether the element is `s`, as the servers compare them (an integer entry equals
    /// its decimal text).
    pub fn is(&self, s: &[u8]) -> bool {
        match self.elem {
            Some(Elem::Str(b)) => b == s,
            Some(Elem::Int(v)) => crate::rdb::writer::packed::canonical_int(s) == Some(v),
            None => false,
        }
    }

    /// The entry's encoded size.
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    /// The element's length as a string (an integer: its decimal digits).
    pub fn text_len(&self) -> usize {
        match self.elem {
            Some(Elem::Str(b)) => b.len(),
            Some(Elem::Int(v)) => decimal_len(v),
            None => 0,
        }
    }
}

fn decimal_len(v: i64) -> usize {
    let mut n = if v < 0 { 2 } else { 1 };
    let mut u = v.unsigned_abs();
    while u >= 10 {
        u /= 10;
        n += 1;
    }
    n
}

/// The entries of a listpack blob (`None`: it does not validate; the caller's other path
/// then reports it).
pub fn items(blob: &[u8]) -> Option<Vec<Item<'_>>> {
    let entries = listpack_entries(blob).ok()?;
    Some(
        entries
            .into_iter()
            .map(|(e, r)| Item {
                elem: Some(e),
                raw: Cow::Borrowed(&blob[r]),
            })
            .collect(),
    )
}

/// A listpack of `items`, in order.
pub fn listpack(items: &[Item<'_>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(items.iter().map(|i| i.raw.len()).sum());
    for i in items {
        body.extend_from_slice(&i.raw);
    }
    listpack_from_entries(&body, items.len())
}

/// Whether a list of `items` is one quicklist node as the writer packs nodes (a node
/// takes an element while it stays under the node size, counted as the writer counts).
pub fn fits_one_node(items: &[Item<'_>]) -> bool {
    use crate::rdb::writer::target::thresholds::LIST_NODE_BYTES;
    let mut bytes = 7;
    for (k, i) in items.iter().enumerate() {
        if k > 0 && bytes + i.text_len() + 11 > LIST_NODE_BYTES {
            return false;
        }
        bytes += i.raw_len();
    }
    true
}

/// Read an RDB length at `*pos` (not the special string encodings).
fn rdb_len(b: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *b.get(*pos)?;
    let (n, used) = match first >> 6 {
        0 => (u64::from(first & 0x3f), 1),
        1 => (
            (u64::from(first & 0x3f) << 8) | u64::from(*b.get(*pos + 1)?),
            2,
        ),
        2 if first == 0x80 => (
            u64::from(u32::from_be_bytes(
                b.get(*pos + 1..*pos + 5)?.try_into().ok()?,
            )),
            5,
        ),
        2 if first == 0x81 => (
            u64::from_be_bytes(b.get(*pos + 1..*pos + 9)?.try_into().ok()?),
            9,
        ),
        _ => return None,
    };
    *pos += used;
    Some(n)
}

/// A plain (length-prefixed, uncompressed) RDB string at `*pos`.
fn rdb_plain_string<'b>(b: &'b [u8], pos: &mut usize) -> Option<&'b [u8]> {
    let n = usize::try_from(rdb_len(b, pos)?).ok()?;
    let s = b.get(*pos..pos.checked_add(n)?)?;
    *pos += n;
    Some(s)
}

/// The blob of a payload that is one plain RDB string (a listpack or intset type).
pub fn blob(payload: &[u8]) -> Option<&[u8]> {
    let mut pos = 0;
    let s = rdb_plain_string(payload, &mut pos)?;
    (pos == payload.len()).then_some(s)
}

/// The listpack of a quicklist-2 payload that holds exactly one packed node.
pub fn one_node(payload: &[u8]) -> Option<&[u8]> {
    let mut pos = 0;
    if rdb_len(payload, &mut pos)? != 1 || rdb_len(payload, &mut pos)? != 2 {
        return None;
    }
    let s = rdb_plain_string(payload, &mut pos)?;
    (pos == payload.len()).then_some(s)
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    crate::rdb::writer::encode::len(out, n as u64);
}

/// What a key holds for a fast path: a packed entry of one of the wanted types, or
/// whatever else it holds (for the general path, without a second lookup).
pub enum Found {
    Packed(Packed),
    Other(Option<Entry>),
}

/// Look `key` up for a fast path over the RDB types in `types`.
pub fn find(ks: &Keyspace, db: u64, key: &[u8], types: &[u8]) -> Found {
    match ks.entry(db, key) {
        Some(Entry::Packed(p)) if types.contains(&p.rdb_type()) => Found::Packed(p),
        other => Found::Other(other),
    }
}

/// Store `blob` (a listpack or intset) as the value of `old`'s key, with its hints.
pub fn store(ks: &mut Keyspace, db: u64, old: &Packed, ty: u8, blob: &[u8]) {
    let mut payload = Vec::with_capacity(blob.len() + 5);
    put_len(&mut payload, blob.len());
    payload.extend_from_slice(blob);
    ks.put(db, Entry::Packed(old.with_payload(ty, &payload)));
}

/// Store a one-node quicklist-2 list of `items` as the value of `old`'s key.
pub fn store_one_node(ks: &mut Keyspace, db: u64, old: &Packed, items: &[Item<'_>]) {
    let lp = listpack(items);
    let mut payload = Vec::with_capacity(lp.len() + 7);
    put_len(&mut payload, 1);
    put_len(&mut payload, 2);
    put_len(&mut payload, lp.len());
    payload.extend_from_slice(&lp);
    ks.put(
        db,
        Entry::Packed(old.with_payload(crate::rdb::types::LIST_QUICKLIST_2, &payload)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::writer::packed::Listpack;

    #[test]
    fn items_round_trip_and_compare_as_the_servers_do() {
        let mut lp = Listpack::new();
        for s in [&b"a"[..], b"12", b"-5", b"007", &[b'x'; 70][..]] {
            lp.push(s);
        }
        let blob = lp.finish();
        let it = items(&blob).unwrap();
        assert_eq!(listpack(&it), blob);
        assert!(it[1].is(b"12") && !it[1].is(b"012") && it[3].is(b"007"));
        assert_eq!(
            it.iter().map(Item::text_len).collect::<Vec<_>>(),
            [1, 2, 2, 3, 70]
        );
        let mut more = it.clone();
        more.push(Item::new(b"4096"));
        more.push(Item::encoded(b"zz"));
        let mut lp = Listpack::new();
        for s in [
            &b"a"[..],
            b"12",
            b"-5",
            b"007",
            &[b'x'; 70][..],
            b"4096",
            b"zz",
        ] {
            lp.push(s);
        }
        assert_eq!(listpack(&more), lp.finish());
        assert!(fits_one_node(&more));
        let big: Vec<Item> = (0..200).map(|_| Item::encoded(&[b'y'; 60])).collect();
        assert!(!fits_one_node(&big));
        assert!(fits_one_node(&big[..100]));
    }

    #[test]
    fn payload_wrappers() {
        let mut p = Vec::new();
        put_len(&mut p, 3);
        p.extend_from_slice(b"abc");
        assert_eq!(blob(&p), Some(&b"abc"[..]));
        assert_eq!(blob(&p[..3]), None);
        assert_eq!(blob(b"\xc3\x01\x02"), None, "LZF is not plain");
        let mut q = vec![1, 2];
        q.extend_from_slice(&p);
        assert_eq!(one_node(&q), Some(&b"abc"[..]));
        q[0] = 2;
        assert_eq!(one_node(&q), None);
        assert_eq!(decimal_len(-100), 4);
        assert_eq!(decimal_len(i64::MIN), 20);
        assert_eq!(decimal_len(0), 1);
    }
}
