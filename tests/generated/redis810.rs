//! Redis 8.8+ additions, where the server has them (the redis-8.10 extra): sparse arrays
//! (type 28) and hash templates (types 30/32 with HASH_TEMPLATE records, opcode 242).

use replisnap::rdb::value::{ArrayElem, SparseArray};

use crate::client::{array, bytes, field, int, Client, Cmd, Rng};
use crate::populate::{n, EXP, INTS};
use crate::support::Reply;
use crate::truth::Model;

/// Whether the server has hash templates (`hash-max-template-entries`).
pub fn has_templates(c: &mut Client) -> bool {
    let r = c.run(
        Cmd::new("CONFIG")
            .arg("GET")
            .arg("hash-max-template-entries"),
    );
    !array(&r, "CONFIG GET").is_empty()
}

/// Arrays: small with every element kind, insert positions, sparse over several slices.
pub fn arrays(c: &mut Client, rng: &mut Rng) {
    let mut small = Cmd::new("ARMSET").arg("arr:small");
    let values: Vec<Vec<u8>> = INTS
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain(
            [
                "", "x", "abcdefg", "abcdefgh", "3.5", "0.1", "-0.0", "1e10", "3.0", "007", "inf",
                "-2.25",
            ]
            .iter()
            .map(|s| s.as_bytes().to_vec()),
        )
        .chain([b"\x00\xff".to_vec(), rng.word(100), rng.compressible(5000)])
        .collect();
    for (i, v) in values.iter().enumerate() {
        small = small.arg(n(i * 3)).arg(v);
    }
    let mut big = Cmd::new("ARMSET").arg("arr:big");
    let mut idx = 0u64;
    for _ in 0..3000 {
        // DEBUG DIGEST walks every index up to the array's length (≈0.4 s per million on
        // 8.10, measured), so indexes stay below ~1 M (still 32-bit RDB lengths).
        let gap = if rng.below(100) == 0 { 1 << 16 } else { 20 };
        idx += 1 + rng.below(gap);
        let v = match rng.below(3) {
            0 => n(rng.next() as i64 >> rng.below(64)),
            1 => {
                let l = rng.below(30) as usize;
                rng.word(l)
            }
            _ => format!("{}", rng.below(1 << 20) as f64 / 8.0).into_bytes(),
        };
        big = big.arg(n(idx)).arg(v);
    }
    big = big.arg("999999").arg("last");
    c.pipe(&[
        small,
        big,
        Cmd::new("ARINSERT").arg("arr:ins").args(["a", "b", "c"]),
        Cmd::new("ARINSERT").arg("arr:ins").args(["d", "5"]),
        Cmd::new("ARDEL").arg("arr:ins").arg("1"),
        Cmd::new("ARMSET").arg("arr:exp").args(["7", "seven"]),
        Cmd::new("PEXPIREAT")
            .arg("arr:exp")
            .arg((EXP + 28).to_string()),
    ]);
}

/// Hash templates: hashes sharing a field set, small (template listpack) and large
/// (template array). Left configured: only hashes created from here on use them.
pub fn templates(c: &mut Client, rng: &mut Rng) {
    for (k, v) in [
        ("hash-min-template-entries", "2"),
        ("hash-max-template-entries", "1000"),
    ] {
        c.run(Cmd::new("CONFIG").args(["SET", k, v]));
    }
    let mut cmds = Vec::new();
    for i in 0..6 {
        let email = if i == 3 {
            b"\x00\xff".to_vec()
        } else {
            rng.word(12)
        };
        cmds.push(
            Cmd::new("HSET")
                .arg(format!("tmpl:user:{i}"))
                .arg("name")
                .arg(rng.word(i))
                .arg("age")
                .arg(n(i * 7))
                .arg("email")
                .arg(email),
        );
    }
    cmds.push(Cmd::new("HSET").arg("tmpl:user:5").arg("extra").arg("1"));
    for i in 0..2 {
        let mut x = Cmd::new("HSET").arg(format!("tmpl:big:{i}"));
        for j in 0..600 {
            x = x
                .arg(format!("f{j}"))
                .arg(if j % 2 == 0 { n(j * i) } else { rng.word(8) });
        }
        cmds.push(x);
    }
    c.pipe(&cmds);
}

/// Commands that describe an array key.
pub fn truth_cmds(k: &[u8]) -> Vec<Cmd> {
    vec![
        Cmd::new("ARSCAN")
            .arg(k)
            .arg("0")
            .arg("9223372036854775807"),
        Cmd::new("ARINFO").arg(k),
    ]
}

pub fn model(r: &[Reply]) -> Model {
    // RESP2: an array of [index, value] pairs.
    let elems = array(&r[0], "ARSCAN")
        .iter()
        .map(|p| {
            let p = array(p, "ARSCAN pair");
            (int(&p[0], "index") as u64, bytes(&p[1], "value"))
        })
        .collect();
    let next_insert = int(
        field(&r[1], "next-insert-index", "ARINFO").expect("next-insert-index"),
        "next-insert-index",
    );
    Model::Array { elems, next_insert }
}

/// Differences between a decoded array and ARSCAN/ARINFO (integers and floats compared by
/// value: the server prints what it stored, the file keeps the number).
pub fn compare(ours: &SparseArray, elems: &[(u64, Vec<u8>)], next_insert: i64) -> Option<String> {
    // The file keeps the index the last ARINSERT used (measured on 8.10.2: after inserting
    // at 0..=4 the record holds 4); ARINFO shows the next one, or 0 when none is set.
    if ours.insert_idx.map_or(0, |i| i as i64 + 1) != next_insert {
        return Some(format!(
            "insert index ours {:?} vs server next-insert-index {next_insert}",
            ours.insert_idx
        ));
    }
    if ours.elems.len() != elems.len() {
        return Some(format!(
            "{} elements ours vs {} on the server",
            ours.elems.len(),
            elems.len()
        ));
    }
    for ((i, e), (si, sv)) in ours.elems.iter().zip(elems) {
        let same = *i == *si
            && match e {
                ArrayElem::Str(b) => b == sv,
                ArrayElem::Int(v) => v.to_string().as_bytes() == sv.as_slice(),
                ArrayElem::Float(f) => std::str::from_utf8(sv)
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .is_some_and(|x| x.to_bits() == f.to_bits()),
            };
        if !same {
            return Some(format!(
                "first difference: ours index {i} {e:?} vs server index {si} {:?}",
                String::from_utf8_lossy(sv)
            ));
        }
    }
    None
}
