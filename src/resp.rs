//! RESP2, the Redis protocol, as a replica meets it: the master's replies during the
//! handshake and the command stream afterwards.
//!
//! Owns parsing and encoding only, over byte buffers, with no I/O: the replication code
//! feeds it what arrived and learns either a frame and its exact byte length (offsets must
//! count every byte) or how many more bytes it needs. Commands go through a
//! [`CommandParser`] that resumes where the previous read stopped, so a command costs time
//! linear in its size however many reads it takes. It must never allocate from an
//! unchecked length (bulk lengths, element counts and a command's total bytes are capped
//! before use) and never panic on what a peer sends.

use std::fmt;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Frame>>),
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest bulk string accepted (the server's `proto-max-bulk-len` default is 512 MB).
    pub max_bulk: usize,
    /// Most elements in one array.
    pub max_elements: usize,
    /// Longest header line (type byte to CRLF).
    pub max_line: usize,
    /// Most bytes in one command (or one reply frame), everything counted.
    pub max_command_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: 512 << 20,
            max_elements: 1 << 20,
            max_line: 64 * 1024,
            // 1 GiB: Redis's `client-query-buffer-limit` default (1gb), the most a master
            // takes from one client, so client commands it propagates stay below it (its own
            // replica exempts the master link; raise the cap for larger rewritten commands).
            max_command_bytes: 1 << 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("protocol error at byte {at}: {what}")]
    Protocol { at: usize, what: String },
    #[error("{what} {len} exceeds the limit of {cap}")]
    TooLarge {
        what: &'static str,
        len: u64,
        cap: usize,
    },
}

/// The outcome of trying to parse from a buffer.
#[derive(Debug, PartialEq)]
pub enum Parsed<T> {
    /// A complete value and the bytes it took.
    Done(T, usize),
    /// Not enough bytes yet: at least this many are needed in total before trying again.
    Incomplete(usize),
}

fn proto(at: usize, what: impl Into<String>) -> RespError {
    RespError::Protocol {
        at,
        what: what.into(),
    }
}

/// Find the CRLF-terminated line starting at `at`; returns its content end.
fn line_end(buf: &[u8], at: usize, limits: &Limits) -> Result<Option<usize>, RespError> {
    let window = &buf[at..buf.len().min(at + limits.max_line + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && window[i - 1] == b'\r' => Ok(Some(at + i - 1)),
        Some(_) => Err(proto(at, "line ends in LF without CR")),
        None if window.len() >= limits.max_line + 2 => Err(proto(at, "header line too long")),
        None => Ok(None),
    }
}

/// A bulk header's length checked against the limits; `None` for the null bulk (`$-1`).
fn bulk_len(n: i64, at: usize, limits: &Limits) -> Result<Option<usize>, RespError> {
    if n == -1 {
        return Ok(None);
    }
    if n < 0 {
        return Err(proto(at, format!("bulk length {n}")));
    }
    if n as u64 > limits.max_bulk as u64 {
        return Err(RespError::TooLarge {
            what: "bulk length",
            len: n as u64,
            cap: limits.max_bulk,
        });
    }
    Ok(Some(n as usize))
}

fn parse_int(s: &[u8], at: usize) -> Result<i64, RespError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| {
            proto(
                at,
                format!("not an integer: {:?}", String::from_utf8_lossy(s)),
            )
        })
}

/// Refuse a frame or command once it is known to need more than `max_command_bytes`.
fn check_total(what: &'static str, len: usize, limits: &Limits) -> Result<(), RespError> {
    if len > limits.max_command_bytes {
        return Err(RespError::TooLarge {
            what,
            len: len as u64,
            cap: limits.max_command_bytes,
        });
    }
    Ok(())
}

/// Parse one frame starting at `buf[0]` (replies: small, parsed whole on every try).
pub fn parse_frame(buf: &[u8], limits: &Limits) -> Result<Parsed<Frame>, RespError> {
    let parsed = parse_at(buf, 0, limits, 0)?;
    match &parsed {
        Parsed::Done(_, n) | Parsed::Incomplete(n) => check_total("frame bytes", *n, limits)?,
    }
    Ok(parsed)
}

const MAX_DEPTH: usize = 8;

fn parse_at(
    buf: &[u8],
    at: usize,
    limits: &Limits,
    depth: usize,
) -> Result<Parsed<Frame>, RespError> {
    if at >= buf.len() {
        return Ok(Parsed::Incomplete(at + 1));
    }
    let Some(end) = line_end(buf, at + 1, limits)? else {
        return Ok(Parsed::Incomplete(buf.len() + 1));
    };
    let line = &buf[at + 1..end];
    let next = end + 2;
    match buf[at] {
        b'+' => Ok(Parsed::Done(Frame::Simple(line.to_vec()), next - at)),
        b'-' => Ok(Parsed::Done(Frame::Error(line.to_vec()), next - at)),
        b':' => Ok(Parsed::Done(
            Frame::Integer(parse_int(line, at + 1)?),
            next - at,
        )),
        b'$' => {
            let Some(n) = bulk_len(parse_int(line, at + 1)?, at, limits)? else {
                return Ok(Parsed::Done(Frame::Bulk(None), next - at));
            };
            let total = next + n + 2;
            if buf.len() < total {
                return Ok(Parsed::Incomplete(total));
            }
            if &buf[next + n..total] != b"\r\n" {
                return Err(proto(next + n, "bulk string not followed by CRLF"));
            }
            Ok(Parsed::Done(
                Frame::Bulk(Some(buf[next..next + n].to_vec())),
                total - at,
            ))
        }
        b'*' => {
            let n = parse_int(line, at + 1)?;
            if n == -1 {
                return Ok(Parsed::Done(Frame::Array(None), next - at));
            }
            if n < 0 {
                return Err(proto(at, format!("array length {n}")));
            }
            if n as u64 > limits.max_elements as u64 {
                return Err(RespError::TooLarge {
                    what: "array length",
                    len: n as u64,
                    cap: limits.max_elements,
                });
            }
            if depth >= MAX_DEPTH {
                return Err(proto(at, "arrays nested too deeply"));
            }
            // Each element takes at least 3 bytes ("+\r\n"): no reservation beyond that.
            let mut items = Vec::with_capacity((n as usize).min((buf.len() - next) / 3 + 1));
            let mut pos = next;
            for _ in 0..n {
                match parse_at(buf, pos, limits, depth + 1)? {
                    Parsed::Done(f, used) => {
                        items.push(f);
                        pos += used;
                    }
                    Parsed::Incomplete(need) => return Ok(Parsed::Incomplete(need)),
                }
            }
            Ok(Parsed::Done(Frame::Array(Some(items)), pos - at))
        }
        b => Err(proto(at, format!("unknown frame type byte 0x{b:02x}"))),
    }
}

/// A command from the replication stream: an array of bulk strings, parsed whole from
/// `buf` (a fresh [`CommandParser`]; the stream keeps one across reads instead).
pub fn parse_command(buf: &[u8], limits: &Limits) -> Result<Parsed<Vec<Vec<u8>>>, RespError> {
    CommandParser::default().parse(buf, limits)
}

/// Parses one command (an array of bulk strings) from a buffer that grows between calls,
/// resuming where the previous call stopped: the array header once read, the arguments
/// copied out so far and the position reached are kept, so the work is linear in the
/// command's size. Until a call returns `Done` or an error, each call must be given the
/// same buffer with bytes appended (a shorter one starts over); after that the parser
/// starts afresh at `buf[0]` of the next call, for the next command.
///
/// Results are exactly those of parsing the bytes at hand whole: the same `used`, the same
/// `Incomplete` totals, the same errors at the same positions (an element that is not a
/// bulk string is refused once the whole array has arrived, as a frame parser would).
#[derive(Debug, Default)]
pub struct CommandParser {
    /// Elements still to read; `None` until the array header is read.
    remaining: Option<usize>,
    /// Where the next element (or the current bulk's header) starts.
    pos: usize,
    /// The current element's bulk body: its start and length, header read.
    bulk: Option<(usize, usize)>,
    args: Vec<Vec<u8>>,
    /// The first element that was not a bulk string, as the error will name it.
    not_bulk: Option<String>,
    /// The header line being read holds no LF before this position.
    scanned: usize,
    /// Length of the last buffer: a shorter one cannot be its continuation.
    seen: usize,
    /// Bytes looked at (line scans, copies): what the linearity test counts.
    #[cfg(test)]
    work: usize,
}

/// Where an element stands after a call.
enum Step {
    Complete,
    /// More bytes are needed: this many in all.
    Need(usize),
}

impl CommandParser {
    /// Parse the command starting at `buf[0]`, continuing the previous call's work.
    pub fn parse(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Parsed<Vec<Vec<u8>>>, RespError> {
        if buf.len() < self.seen {
            self.reset();
        }
        self.seen = buf.len();
        let r = self.resume(buf, limits);
        if !matches!(r, Ok(Parsed::Incomplete(_))) {
            self.reset();
        }
        r
    }

    fn reset(&mut self) {
        self.remaining = None;
        self.pos = 0;
        self.bulk = None;
        self.args = Vec::new();
        self.not_bulk = None;
        self.scanned = 0;
        self.seen = 0;
    }

    fn resume(&mut self, buf: &[u8], limits: &Limits) -> Result<Parsed<Vec<Vec<u8>>>, RespError> {
        let mut remaining = match self.remaining {
            Some(n) => n,
            None => match self.header(buf, limits)? {
                Some(n) => n,
                None => return need(buf.len() + 1, limits),
            },
        };
        while remaining > 0 {
            match self.element(buf, limits)? {
                Step::Complete => remaining -= 1,
                Step::Need(n) => {
                    self.remaining = Some(remaining);
                    return need(n, limits);
                }
            }
        }
        if let Some(other) = &self.not_bulk {
            return Err(proto(
                0,
                format!("command argument is not a bulk string: {other}"),
            ));
        }
        if self.args.is_empty() {
            return Err(proto(0, "empty command"));
        }
        Ok(Parsed::Done(std::mem::take(&mut self.args), self.pos))
    }

    /// The `*<count>` line: the element count once it is whole.
    fn header(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, RespError> {
        let Some(&b) = buf.first() else {
            return Ok(None);
        };
        if b != b'*' {
            return Err(proto(
                0,
                format!("expected a command array, found type byte 0x{b:02x}"),
            ));
        }
        let Some(end) = self.line_end(buf, 1, limits)? else {
            return Ok(None);
        };
        let n = parse_int(&buf[1..end], 1)?;
        if n == -1 {
            let nil = Frame::Array(None);
            return Err(proto(0, format!("expected a command array, got {nil}")));
        }
        if n < 0 {
            return Err(proto(0, format!("array length {n}")));
        }
        if n as u64 > limits.max_elements as u64 {
            return Err(RespError::TooLarge {
                what: "array length",
                len: n as u64,
                cap: limits.max_elements,
            });
        }
        self.advance(end + 2, limits)?;
        // Each element takes at least 3 bytes ("+\r\n"): no reservation beyond that.
        let left = buf.len().saturating_sub(self.pos);
        self.args = Vec::with_capacity((n as usize).min(left / 3 + 1));
        Ok(Some(n as usize))
    }

    /// Read on in the element at `self.pos`.
    fn element(&mut self, buf: &[u8], limits: &Limits) -> Result<Step, RespError> {
        let at = self.pos;
        let (body, n) = match self.bulk {
            Some(b) => b,
            None => {
                let Some(&t) = buf.get(at) else {
                    return Ok(Step::Need(at + 1));
                };
                if t != b'$' {
                    // Never sent by a master: parsed whole as a frame, refused at the end.
                    return match parse_at(buf, at, limits, 1)? {
                        Parsed::Done(f, used) => {
                            self.count(used);
                            self.not_bulk.get_or_insert_with(|| f.to_string());
                            self.advance(at + used, limits)
                        }
                        Parsed::Incomplete(n) => {
                            self.count(buf.len() - at);
                            Ok(Step::Need(n))
                        }
                    };
                }
                let Some(end) = self.line_end(buf, at + 1, limits)? else {
                    return Ok(Step::Need(buf.len() + 1));
                };
                let Some(n) = bulk_len(parse_int(&buf[at + 1..end], at + 1)?, at, limits)? else {
                    self.not_bulk
                        .get_or_insert_with(|| Frame::Bulk(None).to_string());
                    return self.advance(end + 2, limits);
                };
                // Refused before waiting for (or copying) a body past the cap.
                check_total("command bytes", (end + 4).saturating_add(n), limits)?;
                self.bulk = Some((end + 2, n));
                (end + 2, n)
            }
        };
        let total = body.saturating_add(n).saturating_add(2);
        if buf.len() < total {
            return Ok(Step::Need(total));
        }
        if &buf[body + n..total] != b"\r\n" {
            return Err(proto(body + n, "bulk string not followed by CRLF"));
        }
        if self.not_bulk.is_none() {
            self.args.push(buf[body..body + n].to_vec());
        }
        self.count(n + 2);
        self.bulk = None;
        self.advance(total, limits)
    }

    /// The next element starts at `to`.
    fn advance(&mut self, to: usize, limits: &Limits) -> Result<Step, RespError> {
        check_total("command bytes", to, limits)?;
        self.pos = to;
        self.scanned = to;
        Ok(Step::Complete)
    }

    /// [`line_end`], scanning only what the previous calls have not.
    fn line_end(
        &mut self,
        buf: &[u8],
        at: usize,
        limits: &Limits,
    ) -> Result<Option<usize>, RespError> {
        let stop = buf
            .len()
            .min(at.saturating_add(limits.max_line).saturating_add(2));
        let from = self.scanned.max(at).min(stop);
        let lf = buf[from..stop].iter().position(|&b| b == b'\n');
        self.count(lf.map_or(stop - from, |i| i + 1));
        match lf {
            Some(i) if from + i > at && buf[from + i - 1] == b'\r' => Ok(Some(from + i - 1)),
            Some(_) => Err(proto(at, "line ends in LF without CR")),
            None if stop - at >= limits.max_line + 2 => Err(proto(at, "header line too long")),
            None => {
                self.scanned = stop;
                Ok(None)
            }
        }
    }

    #[cfg(test)]
    fn count(&mut self, n: usize) {
        self.work += n;
    }

    #[cfg(not(test))]
    fn count(&mut self, _: usize) {}
}

/// `Incomplete(n)`, unless the command is then known to exceed its cap.
fn need(n: usize, limits: &Limits) -> Result<Parsed<Vec<Vec<u8>>>, RespError> {
    check_total("command bytes", n, limits)?;
    Ok(Parsed::Incomplete(n))
}

/// Append a command as an array of bulk strings.
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Simple(s) => write!(f, "+{}", String::from_utf8_lossy(s)),
            Frame::Error(s) => write!(f, "-{}", String::from_utf8_lossy(s)),
            Frame::Integer(i) => write!(f, ":{i}"),
            Frame::Bulk(None) | Frame::Array(None) => write!(f, "(nil)"),
            Frame::Bulk(Some(b)) => write!(f, "bulk of {} bytes", b.len()),
            Frame::Array(Some(a)) => write!(f, "array of {}", a.len()),
        }
    }
}

#[cfg(test)]
#[path = "resp_tests.rs"]
mod tests;
