//! Errors of the RDB reader: what was wrong, at which byte offset, in which key.
//!
//! Every error names the offset of the byte where the problem was seen and, once the key
//! name has been read, the key. Values are never echoed (they may hold secrets); key names
//! are, escaped and shortened, because an operator needs them to find the damage.

use std::fmt;

/// What went wrong, without the position (see [`RdbError`]).
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("file ends early: needed {needed} more bytes while reading {what}")]
    Truncated { what: &'static str, needed: u64 },
    #[error("not an RDB file: magic {0:?} (expected REDIS0001..REDIS0015 or VALKEY080..)")]
    BadMagic(String),
    #[error("unsupported RDB version {version} ({magic}): this replisnap reads {supported}")]
    UnsupportedVersion {
        magic: &'static str,
        version: u32,
        supported: &'static str,
    },
    #[error("unknown opcode or object type {0} ({1})")]
    UnknownType(u8, &'static str),
    #[error("object type {ty} ({name}) cannot appear in an RDB version {version} file")]
    TypeTooNew {
        ty: u8,
        name: &'static str,
        version: u32,
    },
    #[error("{what} length {len} exceeds the remaining {remaining} bytes")]
    LengthExceedsInput {
        what: &'static str,
        len: u64,
        remaining: u64,
    },
    #[error("{what} length {len} exceeds the limit of {cap}")]
    LengthExceedsCap {
        what: &'static str,
        len: u64,
        cap: u64,
    },
    #[error("invalid length encoding byte 0x{0:02x}")]
    BadLengthEncoding(u8),
    #[error("invalid string encoding {0}")]
    BadStringEncoding(u8),
    #[error("LZF data is corrupt: {0}")]
    Lzf(&'static str),
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("{0} is not supported: {1}")]
    Unsupported(&'static str, String),
    #[error("checksum mismatch: stored {stored:016x}, computed {computed:016x}")]
    Checksum { stored: u64, computed: u64 },
}

impl ErrorKind {
    pub fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        ErrorKind::Invalid {
            what,
            detail: detail.into(),
        }
    }
}

/// An RDB read error with its position.
#[derive(Debug)]
pub struct RdbError {
    /// Byte offset from the start of the file where the problem was seen.
    pub offset: u64,
    /// The key being read, when its name was already known.
    pub key: Option<Vec<u8>>,
    pub kind: ErrorKind,
}

impl RdbError {
    pub fn new(offset: u64, kind: ErrorKind) -> Self {
        RdbError {
            offset,
            key: None,
            kind,
        }
    }

    pub fn with_key(mut self, key: &[u8]) -> Self {
        if self.key.is_none() {
            self.key = Some(key.to_vec());
        }
        self
    }
}

impl fmt::Display for RdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offset {}", self.offset)?;
        if let Some(key) = &self.key {
            write!(f, ": key {}", escape_key(key))?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for RdbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// A key name as a quoted, escaped string of at most ~80 characters.
pub fn escape_key(key: &[u8]) -> String {
    const MAX: usize = 64;
    let mut s = String::from("\"");
    for &b in key.iter().take(MAX) {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    if key.len() > MAX {
        s.push_str(&format!("… ({} bytes)", key.len()));
    }
    s
}

pub type Result<T> = std::result::Result<T, RdbError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_offset_key_and_problem() {
        let e = RdbError::new(
            1834,
            ErrorKind::LengthExceedsInput {
                what: "ziplist entry",
                len: 4294967295,
                remaining: 212,
            },
        )
        .with_key(b"user:\x001");
        assert_eq!(
            e.to_string(),
            "offset 1834: key \"user:\\x001\": ziplist entry length 4294967295 exceeds the remaining 212 bytes"
        );
    }

    #[test]
    fn long_keys_are_shortened() {
        let k = vec![b'a'; 200];
        let s = escape_key(&k);
        assert!(s.len() < 90, "{s}");
        assert!(s.ends_with("(200 bytes)"));
    }
}
