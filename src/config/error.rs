//! The configuration's errors: unreadable, unparsable, invalid (naming the key), and a
//! file a key names that cannot be read. A leaf.

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{path}: {msg}")]
    Parse { path: String, msg: String },
    #[error("{path}: {key}: {msg}")]
    Invalid {
        path: String,
        key: &'static str,
        msg: String,
    },
    /// A file a key names (a secret) could not be read; the caller adds the config file.
    #[error("{key} = {file:?}: cannot read: {err}")]
    KeyFile {
        key: &'static str,
        file: String,
        err: std::io::Error,
    },
}
