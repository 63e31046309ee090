//! Fuzz the RDB reader: any bytes, with the size known and unknown, must give items or a
//! positioned error, never a panic or an allocation beyond the cap. The same bytes go
//! through the offline digest too (values framed by the reader, read in place or decoded
//! by the digest), which must end in a digest or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replisnap::digest::{digest_rdb, DigestOptions};
use replisnap::rdb::{Limits, Options, RdbReader};

fn read(data: &[u8], size_known: bool) {
    let opts = Options {
        limits: Limits {
            max_blob: 16 << 20,
            max_elements: 1 << 20,
        },
        relaxed_version: true,
        stop_after_trailer: false,
    };
    let len = size_known.then_some(data.len() as u64);
    let Ok(mut r) = RdbReader::new(data, len, opts) else { return };
    while let Ok(Some(_)) = r.next_item() {}
    let Ok(r) = RdbReader::new(data, len, opts) else { return };
    let mut d = DigestOptions::new(0);
    d.workers = 0;
    let _ = digest_rdb(r, &d, |_| {});
}

fuzz_target!(|data: &[u8]| {
    read(data, true);
    read(data, false);
});
