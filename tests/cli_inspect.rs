//! `replisnap inspect` as users run it: the real binary, real files, exit codes 0/1/2.

mod common;

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .args(args)
        .output()
        .expect("run replisnap")
}

#[test]
fn json_has_the_spec_fields() {
    let Some(dir) = common::corpus::corpus_dir() else {
        return;
    };
    let f = dir.join("dragonfly__redis6_small.rdb");
    let out = run(&["inspect", "--json", f.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(j["magic"], "REDIS");
    assert_eq!(j["rdb_version"], 9);
    assert_eq!(j["aux"]["redis-ver"], "6.2.7");
    // 20 keys, two of them with expiries long past: the 18 a server keeps (digests.tsv).
    assert_eq!(j["keys_total"], 20);
    assert_eq!(j["keys_loadable"], 18);
    assert_eq!(j["functions"], 0);
    assert_eq!(j["checksum"]["ok"], true);
    assert_eq!(j["checksum"]["stored"], j["checksum"]["computed"]);
    let dbs = j["databases"].as_array().expect("databases array");
    assert_eq!(dbs.len(), 2);
    let total: u64 = dbs.iter().map(|d| d["keys"].as_u64().unwrap()).sum();
    assert_eq!(total, 20);
    for d in dbs {
        let by_type: u64 = d["types"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(
            by_type,
            d["keys"].as_u64().unwrap(),
            "types add up to keys in db {}",
            d["db"]
        );
        for t in ["string", "list", "set", "zset", "hash", "stream", "module"] {
            assert!(d["types"].get(t).is_some(), "type {t} is listed");
        }
    }
}

#[test]
fn text_output_and_checksum_disabled() {
    let Some(dir) = common::corpus::corpus_dir() else {
        return;
    };
    let f = dir.join("valkey__encodings-rdb987.rdb");
    // Future version: refused by default, read with --relaxed like Valkey's relaxed check.
    let out = run(&["inspect", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: ") && err.contains("987"), "{err}");
    let out = run(&["inspect", "--relaxed", "--json", f.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["magic"], "VALKEY");
    assert!(
        j["checksum"]["stored"].is_null(),
        "a zero checksum means disabled: {j}"
    );
    assert_eq!(j["checksum"]["ok"], true);
    let out = run(&["inspect", "--relaxed", f.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("format        VALKEY version 987"), "{text}");
}

#[test]
fn failures_are_one_line_naming_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    // A valid header, then a string key whose length claims 4 GiB.
    let p = tmp.path().join("bad.rdb");
    std::fs::write(&p, b"REDIS0011\x00\x01k\x80\xff\xff\xff\xff").unwrap();
    let out = run(&["inspect", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad.rdb: offset 12: key \"k\""), "{err}");
    assert!(err.contains("exceeds the remaining"), "{err}");
    assert!(out.stdout.is_empty());

    let out = run(&["inspect", tmp.path().join("missing.rdb").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.rdb: cannot open"));

    let out = run(&["inspect"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    let out = run(&["no-such-verb"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn checksum_mismatch_prints_then_fails() {
    let Some(dir) = common::corpus::corpus_dir() else {
        return;
    };
    let mut data = std::fs::read(dir.join("dragonfly__hll.rdb")).unwrap();
    let n = data.len();
    data[n - 1] ^= 0xff; // corrupt the stored CRC only
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("crc.rdb");
    std::fs::write(&p, &data).unwrap();
    let out = run(&["inspect", "--json", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the summary is still printed");
    assert_eq!(j["checksum"]["ok"], false);
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"));
}
