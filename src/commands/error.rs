//! How applying a command fails. A leaf: every family reports through it.
//!
//! Rules: an [`ApplyError`] means our data would differ from the master's if we went on
//! (the replication layer answers it with a full resync), so it names the command and
//! what differs; it is never used for a condition the master itself accepted.

use crate::keyspace::KeyspaceError;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("command {0:?} is not supported yet")]
    Unknown(String),
    #[error("{0} propagated verbatim (the master runs with `lua-replicate-commands no`): replisnap applies a script's effects, not the script; set `lua-replicate-commands yes` on the master (the default since Redis 5)")]
    VerbatimScript(String),
    #[error("{cmd}: {msg}")]
    Invalid { cmd: String, msg: String },
    #[error("{0}")]
    Keyspace(#[from] KeyspaceError),
}

pub(crate) fn invalid(cmd: &str, msg: impl Into<String>) -> ApplyError {
    ApplyError::Invalid {
        cmd: cmd.to_string(),
        msg: msg.into(),
    }
}

pub(crate) fn arg_i64(cmd: &str, a: &[u8]) -> Result<i64, ApplyError> {
    std::str::from_utf8(a)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            invalid(
                cmd,
                format!("not an integer: {:?}", String::from_utf8_lossy(a)),
            )
        })
}
