//! Tests of [`super`]: the in-place digest against decoded values, under damage too.

use super::*;
use crate::rdb::value::HashField;
use crate::rdb::writer::{encode_value, KeyRecord, Target, WriteOptions};
use crate::rdb::{KeyEntry, Value};

fn entry(ty: u8, value: Value) -> KeyEntry {
    KeyEntry {
        db: 0,
        key: b"k".to_vec(),
        expire_ms: None,
        idle: None,
        freq: None,
        meta: Vec::new(),
        rdb_type: ty,
        value,
        offset: 0,
    }
}

/// Values in every encoding the framed types have, as three server versions write them.
fn samples() -> Vec<(u8, Vec<u8>)> {
    let long = "abc".repeat(40);
    let strs = |n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| match i % 3 {
                0 => format!("e{i}").into_bytes(),
                1 => (i as i64 * 977 - 5000).to_string().into_bytes(),
                _ => format!("{long}{i}").into_bytes(),
            })
            .collect()
    };
    let mut values = vec![
        Value::String(b"plain".to_vec()),
        Value::String(b"-12345".to_vec()),
        Value::String(long.clone().into_bytes()),
        Value::String(Vec::new()),
    ];
    for n in [3, 200] {
        values.push(Value::List(strs(n)));
        values.push(Value::Set(strs(n)));
        values.push(Value::Set(
            (0..n).map(|i| (i * 3).to_string().into_bytes()).collect(),
        ));
        values.push(Value::Hash(
            strs(n)
                .into_iter()
                .zip(strs(n).into_iter().rev())
                .map(|(f, v)| HashField {
                    field: f,
                    value: v,
                    expire_ms: None,
                })
                .collect(),
        ));
        let scores = [1.5, 3.0, -0.0, f64::INFINITY, -2e17, 0.1];
        values.push(Value::SortedSet(
            strs(n)
                .into_iter()
                .enumerate()
                .map(|(i, m)| (m, scores[i % scores.len()]))
                .collect(),
        ));
    }
    let mut out = packed_samples();
    for server in ["redis-6.2.0", "redis-7.0.0", "valkey-8.1.0"] {
        let target = Target::for_server(server.parse().expect("version")).expect("target");
        for v in &values {
            let e = entry(0, v.clone());
            let rec = KeyRecord {
                source_type: None,
                ..KeyRecord::from(&e)
            };
            out.push(encode_value(&rec, &target, WriteOptions::default()).expect("encode"));
        }
    }
    out
}

/// An RDB string holding `b` as it is.
fn rdb_string(b: &[u8]) -> Vec<u8> {
    let n = b.len();
    let mut out = if n < 64 {
        vec![n as u8]
    } else if n < 16384 {
        vec![0x40 | (n >> 8) as u8, n as u8]
    } else {
        let mut v = vec![0x80];
        v.extend_from_slice(&(n as u32).to_be_bytes());
        v
    };
    out.extend_from_slice(b);
    out
}

/// Listpacks and ziplists of each packed type, as servers write them (the writer
/// writes plain encodings and lets the target pack them).
fn packed_samples() -> Vec<(u8, Vec<u8>)> {
    use crate::rdb::types::*;
    use crate::rdb::writer::packed::{Listpack, Ziplist};
    let elems: Vec<Vec<u8>> = ["a", "17", "-3", "1.5", "bb", "0", "inf", "-2"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let mut out = Vec::new();
    for n in [2usize, 8] {
        let mut lp = Listpack::new();
        let mut zl = Ziplist::new();
        for e in &elems[..n] {
            lp.push(e);
            zl.push(e);
        }
        let (lp, zl) = (rdb_string(&lp.finish()), rdb_string(&zl.finish()));
        for ty in [HASH_LISTPACK, ZSET_LISTPACK, SET_LISTPACK] {
            out.push((ty, lp.clone()));
        }
        for ty in [LIST_ZIPLIST, HASH_ZIPLIST, ZSET_ZIPLIST] {
            out.push((ty, zl.clone()));
        }
        // Quicklists: two packed nodes, and (v2) a plain node between them.
        let mut q1 = vec![2u8];
        q1.extend_from_slice(&zl);
        q1.extend_from_slice(&zl);
        out.push((LIST_QUICKLIST, q1));
        let mut q2 = vec![3u8, 2];
        q2.extend_from_slice(&lp);
        q2.push(1);
        q2.extend_from_slice(&rdb_string(b"plain node"));
        q2.push(2);
        q2.extend_from_slice(&lp);
        out.push((LIST_QUICKLIST_2, q2));
    }
    out
}

/// The digest of a framed key made ready here, or its refusal.
fn in_place(k: KeyEntry, enc: &[u8], rules: &Rules) -> Option<Option<Acc>> {
    let mut k = Box::new(k);
    let bytes = match prepare(&mut k, 0, enc.to_vec()) {
        Ok(Some(b)) => b,
        Ok(None) => return Some(super::super::value::key_digest(rules, &k, 0).expect("digest")),
        Err(_) => return None,
    };
    let d = collections(
        vec![Col {
            key: k,
            at: 0,
            bytes,
        }],
        rules,
        0,
    );
    if d.failed.is_some() {
        return None;
    }
    match (d.bodies.first(), d.decoded.first()) {
        (Some((_, b)), None) => Some(*b),
        (None, Some(k)) => Some(super::super::value::key_digest(rules, k, 0).expect("digest")),
        _ => panic!("one key in, one out"),
    }
}

/// The digest (or the refusal) of a framed value read in place, and by the decoder.
fn both(ty: u8, enc: &[u8], rules: &Rules) -> (Option<Option<Acc>>, Option<Option<Acc>>) {
    let in_place = in_place(entry(ty, Value::String(Vec::new())), enc, rules);
    let decoded = decode_value(ty, enc, Dialect::Redis).ok().map(|v| {
        let k = entry(ty, v);
        super::super::value::key_digest(rules, &k, 0).expect("digest")
    });
    (in_place, decoded)
}

#[test]
fn in_place_and_decoded_agree_even_on_damaged_values() {
    let rules = Rules::for_target("redis-7.0.0".parse().expect("version")).expect("rules");
    let samples = samples();
    let mut types = std::collections::BTreeSet::new();
    let mut refused = 0;
    for (ty, enc) in &samples {
        types.insert(*ty);
        let (a, b) = both(*ty, enc, &rules);
        assert!(a.is_some(), "type {ty}: a sound value is read");
        assert_eq!(a, b, "type {ty}");
        // Every byte damaged three ways, and every truncation (of a big value, a
        // sample of them spread over it).
        for at in (0..enc.len()).step_by((enc.len() / 500).max(1)) {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = enc.clone();
                bad[at] ^= mask;
                let (a, b) = both(*ty, &bad, &rules);
                assert_eq!(a, b, "type {ty}, byte {at} ^ {mask:#x}");
                refused += usize::from(a.is_none());
            }
            let (a, b) = both(*ty, &enc[..at], &rules);
            assert_eq!(a, b, "type {ty}, cut at {at}");
        }
    }
    // Plain, packed (ziplist, listpack, intset) and quicklist encodings all came by.
    for ty in [0, 2, 4, 10, 11, 12, 13, 14, 16, 17, 18, 20] {
        assert!(types.contains(&ty), "no sample of type {ty}: {types:?}");
    }
    assert!(refused > 1000, "damage was refused only {refused} times");
}

#[test]
fn a_batch_digests_each_key_as_it_alone_would() {
    // Lists of every length around the lockstep bound among the other samples (more
    // lists than lanes), and a damaged value in the middle: each key's digest in the
    // batch is its digest alone, and the damage is the failure, the keys before it
    // kept.
    let rules = Rules::for_target("redis-7.0.0".parse().expect("version")).expect("rules");
    let target = Target::for_server("redis-7.0.0".parse().expect("version")).expect("target");
    let mut values: Vec<(u8, Vec<u8>)> = samples()
        .into_iter()
        .filter(|(ty, _)| view::viewed(*ty))
        .collect();
    for n in [1usize, 2, 17, LOCKSTEP_MAX, LOCKSTEP_MAX + 1, 600] {
        let items = (0..n)
            .map(|i| format!("item {i} of {n}").into_bytes())
            .collect();
        let e = entry(0, Value::List(items));
        let rec = KeyRecord {
            source_type: None,
            ..KeyRecord::from(&e)
        };
        let at = (values.len() / 2).min(values.len());
        values.insert(
            at,
            encode_value(&rec, &target, WriteOptions::default()).expect("encode"),
        );
    }
    let alone: Vec<Option<Option<Acc>>> = values
        .iter()
        .map(|(ty, enc)| in_place(entry(*ty, Value::String(Vec::new())), enc, &rules))
        .collect();
    assert!(alone.iter().all(Option::is_some), "every sample is sound");
    let cols = |vals: &[(u8, Vec<u8>)]| -> Vec<Col> {
        vals.iter()
            .enumerate()
            .map(|(i, (ty, enc))| {
                let mut k = entry(*ty, Value::String(Vec::new()));
                k.key = format!("k{i}").into_bytes();
                k.offset = i as u64;
                Col {
                    key: Box::new(k),
                    at: 0,
                    bytes: enc.clone(),
                }
            })
            .collect()
    };
    let named: Vec<Option<Option<Acc>>> = values
        .iter()
        .enumerate()
        .map(|(i, (ty, enc))| {
            let mut k = entry(*ty, Value::String(Vec::new()));
            k.key = format!("k{i}").into_bytes();
            in_place(k, enc, &rules)
        })
        .collect();
    let d = collections(cols(&values), &rules, 0);
    assert!(d.failed.is_none());
    let mut got = vec![None; values.len()];
    for (k, b) in &d.bodies {
        got[k.offset as usize] = Some(*b);
    }
    for k in &d.decoded {
        got[k.offset as usize] =
            Some(super::super::value::key_digest(&rules, k, 0).expect("digest"));
    }
    assert_eq!(got, named);
    // A value cut short in the middle of the batch.
    let bad = values.len() / 3;
    let mut damaged = values.clone();
    damaged[bad].1.truncate(1);
    let d = collections(cols(&damaged), &rules, 0);
    let (at, _) = d.failed.expect("the cut value fails");
    assert_eq!(at, bad as u64);
    assert!(d.bodies.len() + d.decoded.len() <= bad);
    for (k, b) in &d.bodies {
        assert!((k.offset as usize) < bad);
        assert_eq!(Some(*b), named[k.offset as usize]);
    }
}

#[test]
fn keys_hashed_together_or_alone_digest_as_decoded() {
    // Sets, hashes and sorted sets just under and over the bound for hashing their
    // elements with the other keys', in one batch: each key's digest is its decoded
    // value's, for a printf and an fpconv target.
    use crate::rdb::types::{HASH_LISTPACK, SET_LISTPACK, ZSET_LISTPACK};
    use crate::rdb::writer::packed::Listpack;
    let scores = ["1.5", "-0", "17", "0.1", "-2e5", "3"];
    let mut values = Vec::new();
    for n in [3, TOGETHER_MAX, TOGETHER_MAX + 1, TOGETHER_MAX + 2, 40] {
        let (mut set, mut hash, mut zset) = (Listpack::new(), Listpack::new(), Listpack::new());
        for i in 0..n {
            set.push(
                if i % 2 == 0 {
                    format!("s{i}")
                } else {
                    format!("{i}")
                }
                .as_bytes(),
            );
        }
        for i in 0..n / 2 {
            hash.push(format!("f{}", i % 7 + i).as_bytes());
            hash.push(
                if i % 3 == 0 {
                    format!("{i}")
                } else {
                    format!("v{i}")
                }
                .as_bytes(),
            );
            zset.push(format!("z{i}").as_bytes());
            zset.push(scores[i % scores.len()].as_bytes());
        }
        values.push((SET_LISTPACK, rdb_string(&set.finish())));
        values.push((HASH_LISTPACK, rdb_string(&hash.finish())));
        values.push((ZSET_LISTPACK, rdb_string(&zset.finish())));
    }
    for target in ["redis-7.0.0", "valkey-8.1.0"] {
        let rules = Rules::for_target(target.parse().expect("version")).expect("rules");
        let cols = values
            .iter()
            .enumerate()
            .map(|(i, (ty, enc))| {
                let mut k = entry(*ty, Value::String(Vec::new()));
                k.offset = i as u64;
                Col {
                    key: Box::new(k),
                    at: 0,
                    bytes: enc.clone(),
                }
            })
            .collect();
        let d = collections(cols, &rules, 0);
        assert!(d.failed.is_none() && d.decoded.is_empty(), "{target}");
        assert_eq!(d.bodies.len(), values.len(), "{target}");
        for (k, body) in &d.bodies {
            let (ty, enc) = &values[k.offset as usize];
            let (_, decoded) = both(*ty, enc, &rules);
            let n = k.offset / 3;
            assert_eq!(Some(*body), decoded, "{target}: type {ty}, value {n}");
        }
    }
}

#[test]
fn integers_print_as_the_server_prints_them() {
    for i in [
        0,
        7,
        -1,
        10,
        -10,
        99,
        100,
        -101,
        123_456_789,
        i64::MAX,
        i64::MIN,
    ] {
        assert_eq!(IntText::new(i).as_bytes(), i.to_string().as_bytes());
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for shift in 0..64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x >> shift) as i64;
        for v in [i, -i, i / 7] {
            assert_eq!(IntText::new(v).as_bytes(), v.to_string().as_bytes());
        }
    }
}
