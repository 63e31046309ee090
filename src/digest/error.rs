//! The digest's errors: what could not be read, what a target could not load, and the
//! module values whose digest only the module knows. A leaf.

use crate::rdb::RdbError;

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("{0}")]
    Read(#[from] RdbError),
    #[error(
        "the server asks the module for its digest, so we cannot; key {key} (module {module})"
    )]
    Module { key: String, module: String },
    #[error("{0}")]
    CannotLoad(String),
}

impl DigestError {
    pub(crate) fn cannot_load(key: &[u8], why: impl std::fmt::Display) -> Self {
        DigestError::CannotLoad(format!("key {}: {why}", key.escape_ascii()))
    }
}
