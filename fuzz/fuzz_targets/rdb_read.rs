//! Fuzz the RDB reader: any bytes, with the size known and unknown, must give items or a
//! positioned error, never a panic or an allocation beyond the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
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
}

fuzz_target!(|data: &[u8]| {
    read(data, true);
    read(data, false);
});
