//! FUNCTION LOAD / DELETE / FLUSH / RESTORE: the library code is stored, never run (the
//! master propagates a script's effects, not its calls).
//!
//! [`parse`] checks a command into a typed [`Cmd`] (the subcommand, a library's name in
//! its code, a RESTORE payload decoded and its policy); its [`Apply`] changes the
//! keyspace's library list.

use super::error::{invalid, ApplyError};
use super::parse::{Apply, Parse};
use super::state::StreamState;
use crate::keyspace::Keyspace;

const CMD: &str = "FUNCTION";

/// The library name from the code's first line, `#!<engine> name=<lib> ...`.
pub fn library_name(code: &[u8]) -> Option<&[u8]> {
    let first = code.split(|&b| b == b'\n').next()?;
    let rest = first.strip_prefix(b"#!")?;
    rest.split(|&b| b == b' ')
        .skip(1)
        .find_map(|part| part.strip_prefix(b"name="))
        .filter(|n| !n.is_empty())
}

/// What FUNCTION RESTORE does with the libraries already loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Policy {
    /// Replace them all.
    Flush,
    /// Add the restored ones; a name already loaded is drift.
    Append,
    /// Add the restored ones, replacing a library of the same name.
    Replace,
}

/// A command of this family, parsed.
pub(super) enum Cmd<'a> {
    /// FUNCTION LOAD [REPLACE] code (its library named in the code).
    Load {
        code: &'a [u8],
        replace: bool,
    },
    Delete {
        library: &'a [u8],
    },
    Flush,
    /// FUNCTION RESTORE payload [FLUSH|APPEND|REPLACE]: the payload's libraries (each
    /// named in its code, unless the policy is FLUSH).
    Restore {
        libs: Vec<Vec<u8>>,
        policy: Policy,
    },
}

pub(super) fn parse(mut p: Parse<'_>) -> Result<Cmd<'_>, ApplyError> {
    if p.name() != CMD {
        return Err(ApplyError::Unknown(p.name().to_string()));
    }
    if p.is_done() {
        return Err(invalid(CMD, "no subcommand"));
    }
    let sub = p.next()?;
    let named = |code: &[u8]| match library_name(code) {
        Some(_) => Ok(()),
        None => Err(invalid(CMD, "library code without a name")),
    };
    Ok(
        match String::from_utf8_lossy(sub).to_ascii_uppercase().as_str() {
            "LOAD" => {
                let replace = p.remaining() == 2 && p.eat("REPLACE");
                if p.remaining() != 1 {
                    return Err(invalid(CMD, "LOAD: wrong arguments"));
                }
                let code = p.next()?;
                named(code)?;
                Cmd::Load { code, replace }
            }
            "DELETE" => match p.rest() {
                [library] => Cmd::Delete { library },
                _ => return Err(invalid(CMD, "DELETE: wrong arguments")),
            },
            // FLUSH [ASYNC|SYNC]: the mode changes nothing we hold.
            "FLUSH" => Cmd::Flush,
            "RESTORE" => {
                if p.is_done() {
                    return Err(invalid(CMD, "RESTORE: wrong arguments"));
                }
                let payload = p.next()?;
                let libs = crate::rdb::function_dump(payload)
                    .map_err(|e| invalid(CMD, format!("RESTORE payload: {e}")))?;
                // Only the first argument after the payload is the policy (as before: any
                // further one is not looked at).
                let policy = match p.rest().first() {
                    None => Policy::Append,
                    Some(a) => match String::from_utf8_lossy(a).to_ascii_uppercase().as_str() {
                        "FLUSH" => Policy::Flush,
                        "APPEND" => Policy::Append,
                        "REPLACE" => Policy::Replace,
                        o => return Err(invalid(CMD, format!("RESTORE: unknown policy {o}"))),
                    },
                };
                if policy != Policy::Flush {
                    for code in &libs {
                        named(code)?;
                    }
                }
                Cmd::Restore { libs, policy }
            }
            other => return Err(ApplyError::Unknown(format!("FUNCTION {other}"))),
        },
    )
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, _st: &mut StreamState) -> Result<(), ApplyError> {
        match self {
            Cmd::Load { code, replace } => load(ks, code, replace),
            Cmd::Delete { library } => delete(ks, library),
            Cmd::Flush => {
                ks.functions.clear();
                Ok(())
            }
            Cmd::Restore { libs, policy } => restore(ks, libs, policy),
        }
    }
}

fn drift(what: &str) -> ApplyError {
    invalid(
        CMD,
        format!("{what}: our functions differ from the master's"),
    )
}

/// Load `code`, replacing a library of the same name only when `replace`.
fn load(ks: &mut Keyspace, code: &[u8], replace: bool) -> Result<(), ApplyError> {
    let name = library_name(code).ok_or_else(|| invalid(CMD, "library code without a name"))?;
    match ks
        .functions
        .iter()
        .position(|c| library_name(c) == Some(name))
    {
        Some(i) if replace => ks.functions[i] = code.to_vec(),
        Some(_) => return Err(drift("library exists")),
        None => ks.functions.push(code.to_vec()),
    }
    Ok(())
}

fn delete(ks: &mut Keyspace, library: &[u8]) -> Result<(), ApplyError> {
    let before = ks.functions.len();
    ks.functions.retain(|c| library_name(c) != Some(library));
    if ks.functions.len() == before {
        return Err(drift("no such library"));
    }
    Ok(())
}

fn restore(ks: &mut Keyspace, libs: Vec<Vec<u8>>, policy: Policy) -> Result<(), ApplyError> {
    match policy {
        Policy::Flush => {
            ks.functions = libs;
            Ok(())
        }
        Policy::Append | Policy::Replace => {
            for code in libs {
                load(ks, &code, policy == Policy::Replace)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<Vec<u8>> {
        a.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn parsed(a: &[&str]) -> Result<(), String> {
        let a = argv(a);
        parse(Parse::new(CMD, &a))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn names_and_forms() {
        assert_eq!(
            library_name(b"#!lua name=mylib\nreturn 1"),
            Some(&b"mylib"[..])
        );
        assert_eq!(library_name(b"#!lua\n"), None);
        assert_eq!(library_name(b"#!lua name=\n"), None);
        let code = "#!lua name=l\nredis.register_function('f', function() end)";
        assert!(parsed(&["load", code]).is_ok());
        assert!(parsed(&["LOAD", "replace", code]).is_ok());
        assert!(parsed(&["LOAD", "bogus", code]).is_err());
        assert!(parsed(&["LOAD", "#!lua\n"]).is_err());
        assert!(parsed(&["LOAD"]).is_err());
        assert!(parsed(&["DELETE", "l"]).is_ok());
        assert!(parsed(&["DELETE"]).is_err());
        assert!(parsed(&["FLUSH", "ASYNC"]).is_ok());
        assert!(parsed(&["RESTORE"]).is_err());
        assert!(parsed(&["RESTORE", "short"]).is_err());
        assert!(parsed(&[]).unwrap_err().contains("no subcommand"));
        assert!(parsed(&["STATS"]).unwrap_err().contains("FUNCTION STATS"));
    }
}
