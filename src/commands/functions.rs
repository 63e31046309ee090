//! FUNCTION LOAD / DELETE / FLUSH / RESTORE: the library code is stored, never run (the
//! master propagates a script's effects, not its calls).

use super::error::{invalid, ApplyError};
use super::parse::{Apply, Parse};
use super::state::StreamState;
use crate::keyspace::Keyspace;

/// The library name from the code's first line, `#!<engine> name=<lib> ...`.
pub fn library_name(code: &[u8]) -> Option<Vec<u8>> {
    let first = code.split(|&b| b == b'\n').next()?;
    let rest = first.strip_prefix(b"#!")?;
    rest.split(|&b| b == b' ')
        .skip(1)
        .find_map(|part| part.strip_prefix(b"name=").map(<[u8]>::to_vec))
        .filter(|n| !n.is_empty())
}

fn drift(cmd: &str, what: &str) -> ApplyError {
    invalid(
        cmd,
        format!("{what}: our functions differ from the master's"),
    )
}

fn load(ks: &mut Keyspace, cmd: &str, code: &[u8], replace: bool) -> Result<(), ApplyError> {
    let name = library_name(code).ok_or_else(|| invalid(cmd, "library code without a name"))?;
    match ks
        .functions
        .iter()
        .position(|c| library_name(c).as_deref() == Some(&name[..]))
    {
        Some(i) if replace => ks.functions[i] = code.to_vec(),
        Some(_) => return Err(drift(cmd, "library exists")),
        None => ks.functions.push(code.to_vec()),
    }
    Ok(())
}

pub fn function(ks: &mut Keyspace, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let cmd = "FUNCTION";
    let Some(sub) = args.first() else {
        return Err(invalid(cmd, "no subcommand"));
    };
    let rest = &args[1..];
    match String::from_utf8_lossy(sub).to_ascii_uppercase().as_str() {
        "LOAD" => match rest {
            [code] => load(ks, cmd, code, false),
            [r, code] if r.eq_ignore_ascii_case(b"REPLACE") => load(ks, cmd, code, true),
            _ => Err(invalid(cmd, "LOAD: wrong arguments")),
        },
        "DELETE" => {
            let [name] = rest else {
                return Err(invalid(cmd, "DELETE: wrong arguments"));
            };
            let before = ks.functions.len();
            ks.functions
                .retain(|c| library_name(c).as_deref() != Some(&name[..]));
            if ks.functions.len() == before {
                return Err(drift(cmd, "no such library"));
            }
            Ok(())
        }
        "FLUSH" => {
            ks.functions.clear();
            Ok(())
        }
        "RESTORE" => {
            let [payload, policy @ ..] = rest else {
                return Err(invalid(cmd, "RESTORE: wrong arguments"));
            };
            let libs = crate::rdb::function_dump(payload)
                .map_err(|e| invalid(cmd, format!("RESTORE payload: {e}")))?;
            let policy = policy
                .first()
                .map(|p| String::from_utf8_lossy(p).to_ascii_uppercase())
                .unwrap_or_else(|| "APPEND".into());
            match policy.as_str() {
                "FLUSH" => {
                    ks.functions = libs;
                    Ok(())
                }
                "APPEND" | "REPLACE" => {
                    for code in libs {
                        load(ks, cmd, &code, policy == "REPLACE")?;
                    }
                    Ok(())
                }
                p => Err(invalid(cmd, format!("RESTORE: unknown policy {p}"))),
            }
        }
        other => Err(ApplyError::Unknown(format!("FUNCTION {other}"))),
    }
}

// ---------------------------------------------------------------- parsed form
// Transitional: the name and raw arguments, applied by the functions above. Each family
// moves to typed variants (see parse.rs).

/// A command of this family, parsed.
pub(super) struct Cmd<'a> {
    name: &'static str,
    args: &'a [Vec<u8>],
}

pub(super) fn parse(mut p: Parse<'_>) -> Result<Cmd<'_>, ApplyError> {
    Ok(Cmd {
        name: p.name(),
        args: p.rest(),
    })
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, _st: &mut StreamState) -> Result<(), ApplyError> {
        let (name, args) = (self.name, self.args);
        match name {
            "FUNCTION" => function(ks, args),
            _ => Err(ApplyError::Unknown(name.to_string())),
        }
    }
}
