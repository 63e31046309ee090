//! `replisnap digest` against real servers: the corpus digests recorded in digests.tsv,
//! data generated on every installed server (each type, encoding and edge score), loads
//! across versions, and the CLI's contract.

mod common;
mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use replisnap::digest::{digest_rdb, mix, value, DigestError, DigestOptions, DigestReport, Rules};
use replisnap::rdb::{Options, RdbReader};
use replisnap::server_version::ServerVersion;
use support::{Reply, ServerBin, TestServer};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn digest_file(
    path: &Path,
    target: Option<&str>,
    relaxed: bool,
) -> Result<DigestReport, DigestError> {
    let f = File::open(path).expect("open rdb");
    let len = f.metadata().unwrap().len();
    let opts = Options {
        relaxed_version: relaxed,
        ..Options::default()
    };
    let reader = RdbReader::new(f, Some(len), opts)?;
    let mut d = DigestOptions::new(now_ms());
    d.target = target.map(|t| t.parse().expect("target name"));
    d.relaxed = relaxed;
    digest_rdb(reader, &d, |_| {})
}

// ---------------------------------------------------------------------------------------
// 1. The corpus: every digest a real server recorded after loading a file.
// ---------------------------------------------------------------------------------------

#[test]
fn corpus_digests_match_what_servers_recorded() {
    let Some((dir, rows)) = common::corpus::rows() else {
        return;
    };
    let mut tally: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut failures = Vec::new();
    for row in rows.values().flatten().filter(|r| r.loaded) {
        let (target, relaxed) = match row.server.as_str() {
            "redis-7.0.15" => ("redis-7.0", false),
            "redis-6.2.14" => ("redis-6.2", false),
            "valkey-9.1.2" => ("valkey-9.1", false),
            "valkey-9.1.2(relaxed)" => ("valkey-9.1", true),
            other => panic!("digests.tsv names an unknown server {other}"),
        };
        let got = digest_file(&dir.join(&row.file), Some(target), relaxed);
        let t = tally.entry(row.server.clone()).or_default();
        match got {
            Err(DigestError::Module { .. }) => continue, // needs the module: no claim
            Ok(r) if r.hex() == row.digest => t.0 += 1,
            Ok(r) => {
                t.1 += 1;
                failures.push(format!(
                    "{} on {}: ours {}, server {}",
                    row.file,
                    row.server,
                    r.hex(),
                    row.digest
                ));
            }
            Err(e) => {
                t.1 += 1;
                failures.push(format!("{} on {}: error {e}", row.file, row.server));
            }
        }
    }
    for (server, (pass, fail)) in &tally {
        eprintln!("digests.tsv {server}: {pass} match, {fail} differ");
    }
    assert!(
        tally.values().map(|t| t.0).sum::<u32>() > 300,
        "the corpus should have hundreds of loaded rows"
    );
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// 2. Generated data on each server.
// ---------------------------------------------------------------------------------------

#[path = "digest/populate.rs"]
mod populate;
use populate::*;

/// Every installed server: the matrix (missing ones reported as `require` does) and extras.
fn installed_servers() -> Vec<ServerBin> {
    let mut v = support::require_matrix();
    v.extend(support::EXTRAS.iter().filter_map(|n| support::find(n)));
    v
}

#[test]
fn generated_data_matches_each_server() {
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for bin in installed_servers() {
        let (dump, live) = make_dump(&bin, tmp.path());
        let ours = match digest_file(&dump, None, false) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{bin}: our digest failed: {e}"));
                continue;
            }
        };
        let loaded = TestServer::start_with_rdb(&bin, &dump, &[]).expect("load dump");
        let theirs = loaded.digest();
        eprintln!(
            "{}: ours {} (as {}, {} keys), server after load {}, live before save {}",
            bin.name,
            ours.hex(),
            ours.target,
            ours.keys,
            theirs,
            live
        );
        assert_eq!(ours.keys, loaded.dbsize_all(), "{bin}: key count");
        if ours.hex() != theirs {
            let rules = Rules::for_target(ours.target).unwrap();
            failures.push(format!(
                "{bin}: ours {} vs server {theirs}\n  {}",
                ours.hex(),
                diagnose(&dump, &rules, &loaded).join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A dump made by one server, digested for another, equals what that other answers
/// after loading it.
#[test]
fn cross_version_loads_match() {
    let pairs = [
        ("redis-6.2", "redis-7.0"),
        ("redis-6.2", "redis-8.2"),
        ("redis-6.2", "valkey-8.1"),
        ("redis-7.0", "valkey-9.1"),
        ("redis-7.0", "redis-8.6"),
        ("valkey-8.1", "valkey-9.1"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let mut dumps: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut failures = Vec::new();
    for (from, to) in pairs {
        let (Some(src), Some(dst)) = (support::require(from), support::require(to)) else {
            continue;
        };
        let dump = dumps
            .entry(from.to_string())
            .or_insert_with(|| make_dump(&src, tmp.path()).0)
            .clone();
        let ours = digest_file(&dump, Some(to), false).expect("digest");
        let loaded = TestServer::start_with_rdb(&dst, &dump, &[]).expect("load dump");
        let theirs = loaded.digest();
        eprintln!("{from} dump on {to}: ours {}, server {theirs}", ours.hex());
        if ours.hex() != theirs {
            let rules = Rules::for_target(to.parse().unwrap()).unwrap();
            failures.push(format!(
                "{from} dump on {to}: ours {} vs {theirs}\n  {}",
                ours.hex(),
                diagnose(&dump, &rules, &loaded).join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Keys whose time passed between SAVE and load are dropped by the loading server, and
/// so by us. Hash fields too: Valkey 9 drops them while loading, Redis 7.4+ in its first
/// expiry cycle after (so its answer is read once that has run).
#[test]
fn expired_on_load_is_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["redis-7.0", "redis-8.2", "valkey-9.1"] {
        let Some(bin) = support::require(name) else {
            continue;
        };
        let srv = TestServer::start(&bin, &[]).unwrap();
        let mut c = srv.connect().unwrap();
        runs(&mut c, &["SET", "stays", "1"]);
        runs(&mut c, &["SET", "goes", "1", "PX", "400"]);
        runs(&mut c, &["HSET", "h", "keep", "1", "lose", "2"]);
        runs(&mut c, &["HSET", "h2", "lose", "2"]);
        if has_field_ttl(&bin) {
            runs(&mut c, &["HPEXPIRE", "h", "400", "FIELDS", "1", "lose"]);
            runs(&mut c, &["HPEXPIRE", "h2", "400", "FIELDS", "1", "lose"]);
        }
        let dump = tmp.path().join(format!("{name}.rdb"));
        std::fs::copy(srv.save(), &dump).unwrap();
        drop(srv);
        std::thread::sleep(Duration::from_millis(800));
        let ours = digest_file(&dump, None, false).unwrap();
        let loaded = TestServer::start_with_rdb(&bin, &dump, &[]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(ours.hex(), loaded.digest(), "{name}");
        assert_eq!(ours.keys, loaded.dbsize_all(), "{name}");
        let dropped = if has_field_ttl(&bin) { 2 } else { 1 };
        assert_eq!(
            ours.dropped, dropped,
            "{name}: expired keys and emptied hashes"
        );
    }
}

/// Many random doubles (every magnitude, subnormals included) in one sorted set: the
/// server's DIGEST-VALUE equals ours only if every score was printed the same way.
#[test]
fn score_text_matches_servers_on_random_doubles() {
    for name in ["redis-7.0", "redis-8.2", "valkey-9.1"] {
        let Some(bin) = support::require(name) else {
            continue;
        };
        let srv = TestServer::start(&bin, &[]).unwrap();
        let mut c = srv.connect().unwrap();
        let version: ServerVersion = format!("{}-{}", bin.kind, bin.version).parse().unwrap();
        let rules = Rules::for_target(version).unwrap();
        let mut s: u64 = 0x2545_F491_4F6C_DD1D;
        for round in 0..10 {
            let mut members = Vec::new();
            while members.len() < 1000 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let x = f64::from_bits(s);
                if x.is_finite() && x != 0.0 {
                    members.push((format!("m{}", members.len()).into_bytes(), x));
                }
            }
            let args: Vec<String> = members
                .iter()
                .flat_map(|(m, x)| [format!("{x:e}"), String::from_utf8(m.clone()).unwrap()])
                .collect();
            let key = format!("z{round}");
            run_many(&mut c, &["ZADD", &key], &args);
            let entry = replisnap::rdb::KeyEntry {
                db: 0,
                key: key.clone().into_bytes(),
                expire_ms: None,
                idle: None,
                freq: None,
                meta: Vec::new(),
                rdb_type: replisnap::rdb::types::ZSET_2,
                value: replisnap::rdb::Value::SortedSet(members),
                offset: 0,
            };
            let ours = mix::hex(&value::value_digest(&rules, &entry, 0).unwrap().unwrap());
            let theirs = match runs(&mut c, &["DEBUG", "DIGEST-VALUE", &key]) {
                Reply::Array(Some(v)) => v[0].as_string().unwrap(),
                r => panic!("{r:?}"),
            };
            assert_eq!(ours, theirs, "{name} round {round}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. The command line.
// ---------------------------------------------------------------------------------------

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .args(args)
        .output()
        .expect("run replisnap")
}

#[test]
fn cli_prints_the_digest_and_nothing_else() {
    let Some((dir, rows)) = common::corpus::rows() else {
        return;
    };
    let file = "dragonfly__redis6_small.rdb";
    let want = |server: &str| {
        rows[file]
            .iter()
            .find(|r| r.server == server)
            .expect("row")
            .digest
            .clone()
    };
    let path = dir.join(file);
    let out = cli(&["digest", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", want("redis-6.2.14"))
    );

    // A sorted set with text scores: 6.2 and 7.0 disagree, and so must we.
    let path = dir.join("librdb__plain_zset_v6.rdb");
    for (t, s) in [
        ("redis-6.2", "redis-6.2.14"),
        ("redis-7.0", "redis-7.0.15"),
        ("valkey-9.1", "valkey-9.1.2"),
    ] {
        let out = cli(&["digest", path.to_str().unwrap(), "--target", t]);
        let want = rows["librdb__plain_zset_v6.rdb"]
            .iter()
            .find(|r| r.server == s)
            .unwrap()
            .digest
            .clone();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{want}\n"),
            "{t}"
        );
    }
}

#[test]
fn cli_refuses_module_values_naming_the_key() {
    let Some(dir) = common::corpus::corpus_dir() else {
        return;
    };
    let path = dir.join("librdb__module.rdb");
    let out = cli(&["digest", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("librdb__module.rdb"), "{err}");
    assert!(err.contains("key key1 (module test__rdb)"), "{err}");
}

#[test]
fn cli_failures_are_one_line_and_exit_1() {
    let Some(dir) = common::corpus::corpus_dir() else {
        return;
    };
    let v11 = dir.join("librdb__100_lists.rdb");
    let valkey = dir.join("hdt__valkey_hash2_with_hfe.rdb");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["/nonexistent/dump.rdb".into()], "cannot open"),
        (
            vec![
                v11.display().to_string(),
                "--target".into(),
                "redis-7.0".into(),
            ],
            "refuses RDB version 11",
        ),
        (
            vec![
                valkey.display().to_string(),
                "--target".into(),
                "redis-8.2".into(),
            ],
            "VALKEY",
        ),
        (
            vec![dir.join("kvrocks__empty.rdb").display().to_string()],
            "kvrocks__empty.rdb",
        ),
        (
            vec![
                dir.join("librdb__future_v19.rdb").display().to_string(),
                "--relaxed".into(),
            ],
            "checksum mismatch",
        ),
    ];
    for (args, needle) in cases {
        let mut a = vec!["digest".to_string()];
        a.extend(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = cli(&a);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{a:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{a:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{a:?}: {err}"
        );
    }
    let out = cli(&["digest", "x.rdb", "--target", "keydb-6.2"]);
    assert_eq!(out.status.code(), Some(2), "bad usage");
}

#[test]
fn target_names_parse_like_the_spec_says() {
    for t in [
        "redis-6.2",
        "redis-7.0",
        "redis-8.2",
        "valkey-8.1",
        "valkey-9.1",
    ] {
        let v: ServerVersion = t.parse().unwrap();
        assert!(Rules::for_target(v).is_ok(), "{t}");
    }
}
