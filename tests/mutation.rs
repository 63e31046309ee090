//! Hostile input: seeded truncations, bit flips and inflated length fields applied to every
//! corpus file. The reader must never panic and never make an allocation beyond its cap,
//! whether the input size is known (a file) or not (a pipe). The binary must never exit 101.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::AssertUnwindSafe;

use replisnap::rdb::{Item, Limits, Options, RdbReader};

/// Records the largest single allocation made by the current thread.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|m| {
        if size > m.get() {
            m.set(size)
        }
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const CAP: u64 = 32 << 20;

fn limits() -> Limits {
    Limits {
        max_blob: CAP,
        max_elements: 1 << 24,
    }
}

/// Read a whole input; the outcome only matters in that it must not panic.
fn read_all(data: &[u8], size_known: bool) -> Result<u64, String> {
    let opts = Options {
        limits: limits(),
        relaxed_version: true,
        stop_after_trailer: false,
    };
    let len = size_known.then_some(data.len() as u64);
    let mut r = RdbReader::new(data, len, opts).map_err(|e| e.to_string())?;
    let mut keys = 0;
    while let Some(item) = r.next_item().map_err(|e| e.to_string())? {
        if let Item::Key(_) = item {
            keys += 1;
        }
    }
    Ok(keys)
}

#[derive(Debug)]
enum Mutation {
    Truncate(usize),
    FlipBit(usize, u8),
    Inflate(usize, &'static [u8]),
}

fn apply(orig: &[u8], m: &Mutation) -> Vec<u8> {
    match *m {
        Mutation::Truncate(n) => orig[..n].to_vec(),
        Mutation::FlipBit(at, bit) => {
            let mut v = orig.to_vec();
            v[at] ^= 1 << bit;
            v
        }
        Mutation::Inflate(at, pat) => {
            let mut v = orig.to_vec();
            for (i, b) in pat.iter().enumerate() {
                if at + i < v.len() {
                    v[at + i] = *b;
                }
            }
            v
        }
    }
}

/// Length encodings that claim enormous sizes: 64-bit, 32-bit, 14-bit max, LZF with huge sizes.
const INFLATED: &[&[u8]] = &[
    &[0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x81, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00],
    &[0x80, 0xff, 0xff, 0xff, 0xff],
    &[0x80, 0x7f, 0xff, 0xff, 0xff],
    &[0x7f, 0xff],
    &[
        0xc3, 0x80, 0x7f, 0xff, 0xff, 0xff, 0x80, 0x7f, 0xff, 0xff, 0xff,
    ],
    &[0xff, 0xff, 0xff, 0x7f],
];

fn mutations(orig: &[u8], rng: &mut Rng, per_kind: usize) -> Vec<Mutation> {
    let n = orig.len();
    let mut v = Vec::new();
    for _ in 0..per_kind {
        v.push(Mutation::Truncate(rng.below(n)));
        v.push(Mutation::FlipBit(rng.below(n), rng.below(8) as u8));
        v.push(Mutation::Inflate(
            rng.below(n),
            INFLATED[rng.below(INFLATED.len())],
        ));
    }
    // Every truncation point in the header and first records, where structure is densest.
    for cut in 0..n.min(48) {
        v.push(Mutation::Truncate(cut));
    }
    v
}

#[test]
fn mutated_corpus_never_panics_nor_over_allocates() {
    let Some((dir, files)) = common::corpus::files() else {
        return;
    };
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut cases = 0u64;
    let mut failures = Vec::new();
    for file in &files {
        let orig = std::fs::read(dir.join(file)).expect("read corpus file");
        if orig.is_empty() {
            continue;
        }
        // Big files cost more per case: fewer cases, same kinds.
        let per_kind = if orig.len() > 256 * 1024 { 3 } else { 20 };
        for (i, m) in mutations(&orig, &mut rng, per_kind).into_iter().enumerate() {
            let data = apply(&orig, &m);
            let size_known = i % 2 == 0;
            LARGEST.with(|c| c.set(0));
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| read_all(&data, size_known)));
            let largest = LARGEST.with(|c| c.get());
            cases += 1;
            match r {
                Err(_) => failures.push(format!("{file}: {m:?} (size known: {size_known}): PANIC")),
                Ok(Err(e)) if !e.starts_with("offset ") => {
                    failures.push(format!("{file}: {m:?}: error without an offset: {e}"))
                }
                _ => {}
            }
            // A vector may double past what it holds once; the input buffer is 256 KiB.
            let bound = (2 * CAP) as usize + (1 << 20);
            if largest > bound {
                failures.push(format!(
                    "{file}: {m:?} (size known: {size_known}): allocation of {largest} bytes > {bound}"
                ));
            }
        }
    }
    eprintln!("mutation cases: {cases}");
    assert!(cases >= 5000, "only {cases} cases ran");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_binary_never_exits_101_on_mutated_files() {
    let Some((dir, files)) = common::corpus::files() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(0x0bad_f00d_0000_0002);
    let mut runs = 0;
    for file in files.iter().step_by(6) {
        let orig = std::fs::read(dir.join(file)).expect("read corpus file");
        if orig.len() < 16 || orig.len() > 256 * 1024 {
            continue;
        }
        for m in mutations(&orig, &mut rng, 1).into_iter().take(3) {
            let path = tmp.path().join("m.rdb");
            std::fs::write(&path, apply(&orig, &m)).expect("write");
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_replisnap"))
                .args(["inspect", "--json"])
                .arg(&path)
                .output()
                .expect("run replisnap");
            let code = out.status.code();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                code == Some(0) || code == Some(1),
                "{file} {m:?}: exit {code:?}: {stderr}"
            );
            if code == Some(1) {
                assert!(stderr.starts_with("error: "), "{file} {m:?}: {stderr}");
                assert_eq!(
                    stderr.trim_end().lines().count(),
                    1,
                    "one error line: {stderr}"
                );
            } else {
                let _: serde_json::Value =
                    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
            }
            runs += 1;
        }
    }
    assert!(runs >= 40, "only {runs} runs");
}
