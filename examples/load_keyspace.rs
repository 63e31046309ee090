//! Load an RDB file into the keyspace and report time and key count (for profiling).
//! `cargo run --release --example load_keyspace -- FILE`

use std::fs::File;
use std::time::Instant;

use replisnap::keyspace::{load_rdb, Keyspace};
use replisnap::rdb::{Options, RdbReader};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: load_keyspace FILE"))?;
    let f = File::open(&path)?;
    let len = f.metadata()?.len();
    let mut ks = Keyspace::new();
    let t = Instant::now();
    let r = load_rdb(
        &mut ks,
        &mut RdbReader::new(f, Some(len), Options::default())?,
        None,
    )?;
    println!("{} keys in {:.2} s", r.keys, t.elapsed().as_secs_f64());
    Ok(())
}
