//! Turning a command's arguments into a typed value, once, before anything is applied.
//!
//! Owns the cursor every family parses with ([`Parse`]) and the one signature every parsed
//! command is applied through ([`Apply`]). A family's `parse` is the only place that looks
//! at a command's name and steps through its arguments; its `apply` sees typed fields
//! only. A leaf: it knows no family. It never panics on what the master sent: a missing,
//! extra or malformed argument is an [`ApplyError`] naming the command.

use super::error::{invalid, ApplyError};
use super::state::StreamState;
use crate::keyspace::Keyspace;

/// A parsed command, applied with the same signature whatever it is.
pub trait Apply {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError>;
}

/// A cursor over one command's arguments (the name excluded).
pub struct Parse<'a> {
    name: &'static str,
    args: &'a [Vec<u8>],
    pos: usize,
}

impl<'a> Parse<'a> {
    pub fn new(name: &'static str, args: &'a [Vec<u8>]) -> Parse<'a> {
        Parse { name, args, pos: 0 }
    }

    /// The command's name, upper case.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// An error about this command.
    pub fn error(&self, msg: impl Into<String>) -> ApplyError {
        invalid(self.name, msg)
    }

    /// The next argument; its absence is an arity error.
    pub fn next(&mut self) -> Result<&'a [u8], ApplyError> {
        let a = self
            .args
            .get(self.pos)
            .ok_or_else(|| self.error("wrong number of arguments"))?;
        self.pos += 1;
        Ok(a)
    }

    /// The next argument; its absence is an error saying `msg` ("EX needs a value").
    pub fn next_or(&mut self, msg: impl Into<String>) -> Result<&'a [u8], ApplyError> {
        if self.is_done() {
            return Err(self.error(msg));
        }
        self.next()
    }

    /// An optional trailing count (LPOP/RPOP/ZPOPMIN/ZPOPMAX): absent 1, negative 0.
    pub fn optional_count(&mut self) -> Result<usize, ApplyError> {
        if self.is_done() {
            return Ok(1);
        }
        Ok(usize::try_from(self.next_i64()?.max(0)).unwrap_or(usize::MAX))
    }

    /// The next argument as a decimal integer.
    pub fn next_i64(&mut self) -> Result<i64, ApplyError> {
        let a = self.next()?;
        super::error::arg_i64(self.name, a)
    }

    /// The next argument if it is `keyword` (any case), consumed.
    pub fn eat(&mut self, keyword: &str) -> bool {
        match self.args.get(self.pos) {
            Some(a) if a.eq_ignore_ascii_case(keyword.as_bytes()) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    /// The next argument if it is one of `keywords` (any case): its index there, consumed.
    pub fn eat_any(&mut self, keywords: &[&str]) -> Option<usize> {
        let a = self.args.get(self.pos)?;
        let i = keywords
            .iter()
            .position(|k| a.eq_ignore_ascii_case(k.as_bytes()))?;
        self.pos += 1;
        Some(i)
    }

    /// Whether every argument has been consumed.
    pub fn is_done(&self) -> bool {
        self.pos >= self.args.len()
    }

    /// Arguments not yet consumed, without consuming them.
    pub fn remaining(&self) -> usize {
        self.args.len().saturating_sub(self.pos)
    }

    /// Every argument not yet consumed, consumed.
    pub fn rest(&mut self) -> &'a [Vec<u8>] {
        let r = self.args.get(self.pos..).unwrap_or(&[]);
        self.pos = self.args.len();
        r
    }

    /// The rest, which must be non-empty pairs (`field value …`, `score member …`).
    pub fn pairs(&mut self) -> Result<&'a [Vec<u8>], ApplyError> {
        let r = self.rest();
        if r.is_empty() || !r.len().is_multiple_of(2) {
            return Err(self.error("wrong number of arguments"));
        }
        Ok(r)
    }

    /// The end of the command: an argument left over is an arity error.
    pub fn finish(&self) -> Result<(), ApplyError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(self.error("wrong number of arguments"))
        }
    }
}

/// An argument upper-cased, for matching a keyword and naming it in a message.
pub fn upper(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<Vec<u8>> {
        a.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn cursor_steps_and_reports_arity() {
        let a = argv(&["k", "12", "nx", "f", "v"]);
        let mut p = Parse::new("CMD", &a);
        assert_eq!(p.next().unwrap(), b"k");
        assert_eq!(p.next_i64().unwrap(), 12);
        assert!(!p.eat("XX"));
        assert_eq!(p.eat_any(&["XX", "NX"]), Some(1));
        assert_eq!(p.remaining(), 2);
        assert!(p.finish().is_err());
        assert_eq!(p.pairs().unwrap().len(), 2);
        assert!(p.finish().is_ok());
        let e = p.next().unwrap_err().to_string();
        assert_eq!(e, "CMD: wrong number of arguments");
        let bad = argv(&["x"]);
        let e = Parse::new("INCRBY", &bad).next_i64().unwrap_err();
        assert!(e.to_string().contains("not an integer"), "{e}");
        assert!(Parse::new("HSET", &argv(&["f"])).pairs().is_err());
        let c = argv(&["k", "-3"]);
        let mut p = Parse::new("LPOP", &c);
        assert_eq!(p.next_or("needs a key").unwrap(), b"k");
        assert_eq!(p.optional_count().unwrap(), 0);
        assert_eq!(p.optional_count().unwrap(), 1);
        let e = p.next_or("EX needs a value").unwrap_err().to_string();
        assert_eq!(e, "LPOP: EX needs a value");
        assert_eq!(upper(b"nx"), "NX");
    }
}
