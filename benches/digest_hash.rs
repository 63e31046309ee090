//! Benchmark (not a test): the SHA-1 block compression `DEBUG DIGEST` is made of, one
//! message at a time vs several side by side (`src/digest/sha1x.rs`), and, given a file
//! (`BENCH_RDB=path`), the offline digest of it with the default workers and with none.
//!
//! `cargo bench --bench digest_hash` prints ns per block for 1, 2, 3, 4 and 8 lanes.

use std::hint::black_box;
use std::time::Instant;

use replisnap::digest::sha1x::{self, Block, State, H0};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Blocks compressed per lane count; each round feeds the states back in, so the chains
/// are as dependent as a digest's.
const BLOCKS: usize = 4_000_000;

fn lanes<const N: usize>() -> f64 {
    let mut states: [State; N] = std::array::from_fn(|i| {
        let mut s = H0;
        s[0] ^= i as u32;
        s
    });
    let mut blocks: [Block; N] = [[0x5a5a_5a5a; 16]; N];
    let t = Instant::now();
    for _ in 0..BLOCKS / N {
        sha1x::compress(&mut states, &blocks);
        // The next block depends on this result, as a mix chain's does.
        for (b, s) in blocks.iter_mut().zip(&states) {
            b[..5].copy_from_slice(s);
        }
    }
    black_box(&states);
    t.elapsed().as_nanos() as f64 / BLOCKS as f64
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    println!("SHA-NI: {}", sha1x::has_sha_ni());
    for _ in 0..2 {
        println!(
            "ns per block: 1 lane {:.1}, 2 lanes {:.1}, 3 lanes {:.1}, 4 lanes {:.1}, 8 lanes {:.1}",
            lanes::<1>(),
            lanes::<2>(),
            lanes::<3>(),
            lanes::<4>(),
            lanes::<8>()
        );
    }
    let Some(path) = std::env::var_os("BENCH_RDB") else {
        return;
    };
    let len = std::fs::metadata(&path).expect("stat").len();
    for workers in [replisnap::digest::parallel::default_workers(), 0] {
        let reader = replisnap::rdb::RdbReader::new(
            std::fs::File::open(&path).expect("open"),
            Some(len),
            replisnap::rdb::Options::default(),
        )
        .expect("header");
        let mut opts = replisnap::digest::DigestOptions::new(0);
        opts.workers = workers;
        let t = Instant::now();
        let r = replisnap::digest::digest_rdb(reader, &opts, |_| {}).expect("digest");
        let s = t.elapsed().as_secs_f64();
        println!(
            "digest {} with {workers} workers: {:.2} s, {:.0} MB/s",
            r.hex(),
            s,
            len as f64 / 1e6 / s
        );
    }
}
