//! The daemon's configuration file (TOML, ../shared/SPEC.md §2): parsing and validation.
//!
//! Owns every key users may write and what it means, defaults included. Unknown keys and
//! bad values are errors naming the key and, from the TOML parser, the line. Secrets are
//! resolved here (inline, file, or environment) and never printed: [`Config::redacted`]
//! is what `check-config` shows.

mod error;
mod model;
mod redact;
mod validate;

use std::path::Path;

pub use error::ConfigError;
pub use model::*;
use redact::{holds_secret, mask_quoted, redact_line};

impl Config {
    /// Read, parse and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: p.clone(),
            err,
        })?;
        Config::parse(&text, &p)
    }

    /// Parse and validate TOML text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|sp| {
                let before = &text[..sp.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                let col = before.len() - line_start + 1;
                let src = text[line_start..].lines().next().unwrap_or("").trim();
                (format!("line {line}, column {col}"), src)
            });
            let mut message = e.message().trim_end().replace('\n', " ");
            let at = match at {
                // A secret's line is named, never shown, and neither is any value the
                // parser quotes from it (`invalid type: integer `1234``).
                Some((place, src)) if holds_secret(src) => {
                    message = mask_quoted(&message);
                    format!("{place} (`{}`): ", redact_line(src))
                }
                Some((place, src)) => format!("{place} (`{src}`): "),
                None => String::new(),
            };
            ConfigError::Parse {
                path: path.to_string(),
                msg: format!("{at}{message}"),
            }
        })?;
        c.validate(path)?;
        Ok(c)
    }

    /// The source password from the config, its file, or the environment. An unreadable
    /// file is [`ConfigError::KeyFile`] naming `source.password_file`.
    pub fn source_password(&self) -> Result<Option<String>, ConfigError> {
        if let Some(p) = &self.source.password {
            return Ok(Some(p.clone()));
        }
        if let Some(f) = &self.source.password_file {
            let text = std::fs::read_to_string(f).map_err(|err| ConfigError::KeyFile {
                key: "source.password_file",
                file: f.display().to_string(),
                err,
            })?;
            return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
        }
        Ok(std::env::var(PASSWORD_ENV).ok())
    }

    /// The sentinels' password, from `[source] sentinel_password_file`.
    pub fn sentinel_password(&self) -> Result<Option<String>, ConfigError> {
        let Some(f) = &self.source.sentinel_password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(f).map_err(|err| ConfigError::KeyFile {
            key: "source.sentinel_password_file",
            file: f.display().to_string(),
            err,
        })?;
        Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
    }

    /// The bearer token for `POST /snapshot`: `[http] token_file`'s contents (trailing
    /// newline dropped), else `$REPLISNAP_HTTP_TOKEN`; `None` when neither is set. An
    /// unreadable or empty file is [`ConfigError::KeyFile`] naming `http.token_file`.
    pub fn http_token(&self) -> Result<Option<String>, ConfigError> {
        let token = match &self.http.token_file {
            Some(f) => {
                let key_file = |err| ConfigError::KeyFile {
                    key: "http.token_file",
                    file: f.display().to_string(),
                    err,
                };
                let text = std::fs::read_to_string(f).map_err(key_file)?;
                let t = text.trim_end_matches(['\r', '\n']).to_string();
                if t.is_empty() {
                    return Err(key_file(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the file is empty",
                    )));
                }
                t
            }
            None => match std::env::var(HTTP_TOKEN_ENV) {
                Ok(t) if !t.is_empty() => t,
                _ => return Ok(None),
            },
        };
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            let msg = "the token must be printable ASCII without spaces";
            return Err(match &self.http.token_file {
                Some(f) => ConfigError::KeyFile {
                    key: "http.token_file",
                    file: f.display().to_string(),
                    err: std::io::Error::new(std::io::ErrorKind::InvalidData, msg),
                },
                None => ConfigError::Invalid {
                    path: format!("${HTTP_TOKEN_ENV}"),
                    key: "http.token_file",
                    msg: msg.into(),
                },
            });
        }
        Ok(Some(token))
    }

    /// The effective configuration with every secret replaced.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if c.source.password.is_some() {
            c.source.password = Some("<redacted>".into());
        }
        c
    }
}

#[cfg(test)]
mod tests;
