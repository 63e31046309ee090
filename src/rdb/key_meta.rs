//! Opcode 243: Redis KEY_META and Valkey SLOT_IMPORT.
use std::io::Read;

use super::error::{ErrorKind, Result};
use super::input::Input;

pub(super) fn read<R: Read>(inp: &mut Input<R>) -> Result<(u32, Vec<u8>)> {
    Err(inp.err(ErrorKind::Unsupported("KEY_META", String::new())))
}

pub(super) fn slot_import<R: Read>(inp: &mut Input<R>) -> Result<Vec<u64>> {
    Err(inp.err(ErrorKind::Unsupported("SLOT_IMPORT", String::new())))
}
