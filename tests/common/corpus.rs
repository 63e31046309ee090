//! Locating the shared RDB corpus and its `digests.tsv` (test data only, never copied).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

/// `$REPLISNAP_CORPUS`, else `../shared/corpus` beside the crate. With `CI` set a missing
/// corpus fails the test; otherwise it is skipped with a notice.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("REPLISNAP_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    if dir.join("digests.tsv").is_file() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "RDB corpus not found at {} (set REPLISNAP_CORPUS)",
            dir.display()
        );
    }
    eprintln!("SKIP: RDB corpus not found at {}", dir.display());
    None
}

/// One row of digests.tsv: what one server answered after loading one file.
#[derive(Debug, Clone)]
pub struct Row {
    pub file: String,
    pub server: String,
    pub loaded: bool,
    pub dbsize: Option<u64>,
    pub digest: String,
    pub error: String,
}

pub fn rows() -> Option<(PathBuf, BTreeMap<String, Vec<Row>>)> {
    let dir = corpus_dir()?;
    let text = std::fs::read_to_string(dir.join("digests.tsv")).expect("read digests.tsv");
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let c: Vec<&str> = line.split('\t').collect();
        if c.len() < 5 {
            continue;
        }
        out.entry(c[0].to_string()).or_default().push(Row {
            file: c[0].to_string(),
            server: c[1].to_string(),
            loaded: c[2] == "yes",
            dbsize: c[3].parse().ok(),
            digest: c[4].to_string(),
            error: c.get(5).unwrap_or(&"").to_string(),
        });
    }
    Some((dir, out))
}

/// Every `.rdb` file in the corpus, sorted.
pub fn files() -> Option<(PathBuf, Vec<String>)> {
    let dir = corpus_dir()?;
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .expect("read corpus dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rdb"))
        .collect();
    v.sort();
    Some((dir, v))
}
