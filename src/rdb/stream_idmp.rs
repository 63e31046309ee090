//! Stream format 4+ (Redis 8.6): the idempotent-producer (IDMP) block after the groups.
//!
//! Owns its layout and bounds (duration 1..86400 s, 1..10000 entries per producer, as the
//! server enforces). It must never accept a producer list longer than the input allows.

use std::io::Read;

use super::blob::reserve;
use super::error::{ErrorKind, RdbError, Result};
use super::input::Input;
use super::value::{IdmpProducer, StreamId, StreamIdmp};

pub(super) fn read<R: Read>(inp: &mut Input<R>) -> Result<StreamIdmp> {
    let at = inp.offset();
    let duration_s = inp.read_len("IDMP duration")?;
    let max_entries = inp.read_len("IDMP max entries")?;
    if !(1..=86_400).contains(&duration_s) || !(1..=10_000).contains(&max_entries) {
        return Err(RdbError::new(
            at,
            ErrorKind::invalid(
                "stream IDMP settings",
                format!("duration {duration_s} s, max entries {max_entries}"),
            ),
        ));
    }
    let n = inp.read_count(2, "IDMP producer count")?;
    let mut producers = Vec::with_capacity(reserve(n));
    for _ in 0..n {
        let id = inp.read_string("IDMP producer id")?;
        let m = inp.read_count(3, "IDMP entry count")?;
        let mut entries = Vec::with_capacity(reserve(m));
        for _ in 0..m {
            let iid = inp.read_string("IDMP idempotency id")?;
            let ms = inp.read_len("IDMP entry id")?;
            let seq = inp.read_len("IDMP entry id")?;
            entries.push((iid, StreamId { ms, seq }));
        }
        producers.push(IdmpProducer { id, entries });
    }
    let iids_added = inp.read_len("IDMP ids added")?;
    let iids_duplicates = inp.read_len("IDMP duplicates")?;
    Ok(StreamIdmp {
        duration_s,
        max_entries,
        producers,
        iids_added,
        iids_duplicates,
    })
}
