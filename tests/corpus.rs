//! Every corpus file a real server loaded must parse, and `keys_loadable` must equal the
//! key count that server reported; every other file parses or fails with a clear error.

mod common;

use std::fs::File;
use std::time::{SystemTime, UNIX_EPOCH};

use replisnap::rdb::{Options, RdbReader};
use replisnap::summary::{summarize, FileSummary};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn summarize_file(path: &std::path::Path, relaxed: bool) -> Result<FileSummary, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let opts = Options {
        relaxed_version: relaxed,
        ..Options::default()
    };
    let r = RdbReader::new(f, Some(len), opts).map_err(|e| e.to_string())?;
    summarize(r, now_ms(), |_| {}).map_err(|e| e.to_string())
}

#[test]
fn loaded_files_parse_with_the_servers_key_counts() {
    let Some((dir, rows)) = common::corpus::rows() else {
        return;
    };
    let mut checked = 0;
    let mut failures = Vec::new();
    for (file, rs) in &rows {
        let loaded: Vec<_> = rs.iter().filter(|r| r.loaded).collect();
        if loaded.is_empty() {
            continue;
        }
        // A file only Valkey's relaxed version check loads is read in our relaxed mode.
        let relaxed = loaded.iter().all(|r| r.server.contains("relaxed"));
        match summarize_file(&dir.join(file), relaxed) {
            Err(e) => failures.push(format!("{file}: {e}")),
            Ok(s) => {
                for r in &loaded {
                    if r.dbsize != Some(s.keys_loadable) {
                        failures.push(format!(
                            "{file}: keys_loadable {} but {} reported {:?}",
                            s.keys_loadable, r.server, r.dbsize
                        ));
                    }
                }
                assert!(
                    s.checksum.ok,
                    "{file}: checksum mismatch on a file a server loaded"
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 140,
        "only {checked} loaded files found in the corpus"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_file_parses_or_fails_with_a_positioned_error() {
    let Some((dir, files)) = common::corpus::files() else {
        return;
    };
    assert!(files.len() >= 170, "corpus has only {} files", files.len());
    for file in &files {
        let path = dir.join(file);
        let r = std::panic::catch_unwind(|| summarize_file(&path, false));
        match r {
            Err(_) => panic!("{file}: the reader panicked"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => assert!(
                e.starts_with("offset "),
                "{file}: error without an offset: {e}"
            ),
        }
    }
}
