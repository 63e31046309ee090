//! Hashes with per-field expiry: Redis types 22–25 and Valkey type 22.
use std::io::Read;

use super::error::{ErrorKind, Result};
use super::input::Input;
use super::value::Value;
use super::Dialect;

pub(super) fn read<R: Read>(inp: &mut Input<R>, ty: u8, dialect: Dialect) -> Result<Value> {
    let _ = dialect;
    Err(inp.err(ErrorKind::Unsupported(
        "hash with field TTLs",
        format!("type {ty}"),
    )))
}
