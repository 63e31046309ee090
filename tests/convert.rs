//! `convert` proven by the servers: every corpus file a server loaded, converted for that
//! server, loads there with the same `DEBUG DIGEST` and key count digests.tsv recorded.

mod common;
mod support;

use std::fs::File;

use replisnap::convert::convert;
use replisnap::rdb::writer::WriteOptions;
use replisnap::rdb::{Options, RdbReader};
use replisnap::server_version::ServerVersion;
use support::TestServer;

/// digests.tsv server column → (our target, the installed server to load with, extra args).
fn server_for(column: &str) -> Option<(&'static str, &'static str, &'static [&'static str])> {
    match column {
        "redis-7.0.15" => Some(("redis-7.0", "redis-7.0", &[])),
        "redis-6.2.14" => Some(("redis-6.2", "redis-6.2", &[])),
        "valkey-9.1.2" => Some(("valkey-9.1", "valkey-9.1", &[])),
        _ => None,
    }
}

fn check_column(column: &str) {
    let Some((target, name, extra)) = server_for(column) else {
        panic!("{column}")
    };
    let Some(bin) = support::require(name) else {
        return;
    };
    let Some((dir, rows)) = common::corpus::rows() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (file, rs) in &rows {
        // The row for this server, or for its relaxed twin when only that one loaded it.
        let row = rs
            .iter()
            .find(|r| r.server == column && r.loaded)
            .or_else(|| {
                rs.iter()
                    .find(|r| r.server == format!("{column}(relaxed)") && r.loaded)
            });
        let Some(row) = row else { continue };
        let relaxed = row.server.contains("relaxed");
        let src = dir.join(file);
        let f = File::open(&src).unwrap();
        let len = f.metadata().unwrap().len();
        let opts = Options {
            relaxed_version: relaxed,
            ..Options::default()
        };
        let out_path = tmp.path().join("converted.rdb");
        let out = File::create(&out_path).unwrap();
        let target: ServerVersion = target.parse().unwrap();
        let r = RdbReader::new(f, Some(len), opts)
            .map_err(|e| e.to_string())
            .and_then(|r| {
                convert(r, out, Some(target), WriteOptions::default()).map_err(|e| e.to_string())
            });
        if let Err(e) = r {
            failures.push(format!("{file}: convert: {e}"));
            continue;
        }
        match TestServer::start_with_rdb(&bin, &out_path, extra) {
            Err(e) => failures.push(format!("{file}: {name} refused our file: {e}")),
            Ok(s) => {
                let digest = s.digest();
                let n = s.dbsize_all();
                if digest != row.digest || Some(n) != row.dbsize {
                    failures.push(format!(
                        "{file}: {name} digest {digest} keys {n}, expected {} keys {:?}",
                        row.digest, row.dbsize
                    ));
                }
            }
        }
        checked += 1;
    }
    eprintln!("{column}: {checked} files converted and loaded");
    assert!(checked >= 80, "{column}: only {checked} files");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_converted_for_redis_7_0_keeps_its_digest() {
    check_column("redis-7.0.15");
}

#[test]
fn corpus_converted_for_redis_6_2_keeps_its_digest() {
    check_column("redis-6.2.14");
}

#[test]
fn corpus_converted_for_valkey_9_1_keeps_its_digest() {
    check_column("valkey-9.1.2");
}
