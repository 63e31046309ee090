//! Helpers every value decoder shares: a string blob holding a packed encoding (with the
//! offset it starts at, for errors), a packed-decoding error placed at that offset, and the
//! cap on a vector's first reservation.
//!
//! A leaf under `object.rs` and the per-type decoders (hash_ttl, redis88, stream,
//! stream_idmp), so that none of them imports another. It must never reserve from a count
//! more than [`reserve`] allows: counts are checked against the input, not trusted.

use std::io::Read;

use super::error::{ErrorKind, RdbError, Result};
use super::input::Input;
use super::packed::PackedError;

/// A packed-encoding error at the offset where its blob starts.
pub(super) fn packed_err(at: u64, what: &'static str, e: PackedError) -> RdbError {
    RdbError::new(at, ErrorKind::invalid(what, e.to_string()))
}

/// Cap the initial reservation for a count already checked against the input.
pub(super) fn reserve(n: u64) -> usize {
    n.min(4096) as usize
}

/// A string blob holding a packed encoding, with the offset where it starts.
pub(super) fn blob<R: Read>(inp: &mut Input<R>, what: &'static str) -> Result<(u64, Vec<u8>)> {
    let at = inp.offset();
    Ok((at, inp.read_string(what)?))
}
