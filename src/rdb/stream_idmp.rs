//! Stream format 4 (Redis 8.6): idempotent-producer state.
use std::io::Read;

use super::error::{ErrorKind, Result};
use super::input::Input;
use super::value::StreamIdmp;

pub(super) fn read<R: Read>(inp: &mut Input<R>) -> Result<StreamIdmp> {
    Err(inp.err(ErrorKind::Unsupported("stream IDMP", String::new())))
}
