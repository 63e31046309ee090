//! Opcode 243, which means two things: Redis KEY_META (8.6+, a prefix of the next key)
//! and Valkey SLOT_IMPORT (9.0+, a cluster slot-import job record).
//!
//! Owns both layouts. KEY_META class values are module-written and kept opaque and exact,
//! so they can be written back; they must never be interpreted here.

use std::io::Read;

use super::blob::reserve;
use super::error::{ErrorKind, RdbError, Result};
use super::input::Input;
use super::object::skip_module_payload;

/// Most metadata classes a key can carry (slots 1–7; slot 0 is the expiry).
const MAX_CLASSES: u64 = 7;

/// One KEY_META record: each class's 32-bit spec and its raw module-format value.
pub(super) fn read<R: Read>(inp: &mut Input<R>) -> Result<Vec<(u32, Vec<u8>)>> {
    let at = inp.offset();
    let n = inp.read_len("key metadata class count")?;
    if n == 0 || n > MAX_CLASSES {
        return Err(RdbError::new(
            at,
            ErrorKind::invalid(
                "key metadata",
                format!("{n} classes (1 to {MAX_CLASSES} allowed)"),
            ),
        ));
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        // Written raw in host order, little-endian on every platform servers ship for.
        let spec = u32::from_le_bytes(inp.read_array("key metadata class spec")?);
        inp.start_recording();
        let r = skip_module_payload(inp);
        let raw = inp.take_recording();
        r?;
        out.push((spec, raw));
    }
    Ok(out)
}

/// A Valkey slot-import job: its name and the slot ranges it covers.
/// A slot-import job's name and its inclusive slot ranges.
pub(super) type SlotImport = (Vec<u8>, Vec<(u64, u64)>);

pub(super) fn slot_import<R: Read>(inp: &mut Input<R>) -> Result<SlotImport> {
    let job = inp.read_string("slot import job name")?;
    let n = inp.read_count(2, "slot import range count")?;
    let mut ranges = Vec::with_capacity(reserve(n));
    for _ in 0..n {
        let at = inp.offset();
        let start = inp.read_len("slot range start")?;
        let end = inp.read_len("slot range end")?;
        if start > end || end > 16383 {
            return Err(RdbError::new(
                at,
                ErrorKind::invalid("slot import range", format!("{start}-{end}")),
            ));
        }
        ranges.push((start, end));
    }
    Ok((job, ranges))
}
