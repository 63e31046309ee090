//! RESP2, the Redis protocol, as a replica meets it: the master's replies during the
//! handshake and the command stream afterwards.
//!
//! Owns parsing and encoding only, over byte buffers, with no I/O: the replication code
//! feeds it what arrived and learns either a frame and its exact byte length (offsets must
//! count every byte) or how many more bytes it needs. It must never allocate from an
//! unchecked length (bulk lengths and element counts are capped before use) and never
//! panic on what a peer sends.

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: 512 << 20,
            max_elements: 1 << 20,
            max_line: 64 * 1024,
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

/// Parse one frame starting at `buf[0]`.
pub fn parse_frame(buf: &[u8], limits: &Limits) -> Result<Parsed<Frame>, RespError> {
    parse_at(buf, 0, limits, 0)
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
            let n = parse_int(line, at + 1)?;
            if n == -1 {
                return Ok(Parsed::Done(Frame::Bulk(None), next - at));
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
            let n = n as usize;
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

/// A command from the replication stream: an array of bulk strings.
pub fn parse_command(buf: &[u8], limits: &Limits) -> Result<Parsed<Vec<Vec<u8>>>, RespError> {
    if let Some(&b) = buf.first() {
        if b != b'*' {
            return Err(proto(
                0,
                format!("expected a command array, found type byte 0x{b:02x}"),
            ));
        }
    }
    match parse_frame(buf, limits)? {
        Parsed::Incomplete(n) => Ok(Parsed::Incomplete(n)),
        Parsed::Done(Frame::Array(Some(items)), used) => {
            let mut args = Vec::with_capacity(items.len());
            for it in items {
                match it {
                    Frame::Bulk(Some(b)) => args.push(b),
                    other => {
                        return Err(proto(
                            0,
                            format!("command argument is not a bulk string: {other}"),
                        ))
                    }
                }
            }
            if args.is_empty() {
                return Err(proto(0, "empty command"));
            }
            Ok(Parsed::Done(args, used))
        }
        Parsed::Done(other, _) => Err(proto(0, format!("expected a command array, got {other}"))),
    }
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
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits::default()
    }

    #[test]
    fn frames_of_every_type() {
        assert_eq!(
            parse_frame(b"+OK\r\n", &lim()).unwrap(),
            Parsed::Done(Frame::Simple(b"OK".to_vec()), 5)
        );
        assert_eq!(
            parse_frame(b"-ERR x\r\n", &lim()).unwrap(),
            Parsed::Done(Frame::Error(b"ERR x".to_vec()), 8)
        );
        assert_eq!(
            parse_frame(b":-42\r\n", &lim()).unwrap(),
            Parsed::Done(Frame::Integer(-42), 6)
        );
        assert_eq!(
            parse_frame(b"$-1\r\n", &lim()).unwrap(),
            Parsed::Done(Frame::Bulk(None), 5)
        );
        assert_eq!(
            parse_frame(b"$0\r\n\r\n", &lim()).unwrap(),
            Parsed::Done(Frame::Bulk(Some(vec![])), 6)
        );
        assert_eq!(
            parse_frame(b"*-1\r\n", &lim()).unwrap(),
            Parsed::Done(Frame::Array(None), 5)
        );
    }

    #[test]
    fn commands_count_every_byte_and_wait_for_more() {
        let mut buf = Vec::new();
        encode_command(&[b"SET", b"k\r\n", b""], &mut buf);
        let n = buf.len();
        buf.extend_from_slice(b"*1\r\n$4\r\nPI");
        match parse_command(&buf, &lim()).unwrap() {
            Parsed::Done(args, used) => {
                assert_eq!(args, vec![b"SET".to_vec(), b"k\r\n".to_vec(), vec![]]);
                assert_eq!(used, n);
            }
            other => panic!("{other:?}"),
        }
        for cut in 0..n {
            assert!(
                matches!(parse_command(&buf[..cut], &lim()).unwrap(), Parsed::Incomplete(need) if need > cut)
            );
        }
        assert!(matches!(
            parse_command(&buf[n..], &lim()).unwrap(),
            Parsed::Incomplete(_)
        ));
        // A big bulk tells the caller how much it needs in one go.
        let head = b"*1\r\n$100000\r\nabc";
        assert_eq!(
            parse_command(head, &lim()).unwrap(),
            Parsed::Incomplete(4 + 9 + 100_000 + 2)
        );
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic_or_allocation() {
        let l = Limits {
            max_bulk: 1000,
            max_elements: 10,
            max_line: 32,
        };
        assert!(matches!(
            parse_frame(b"$999999999999\r\n", &l),
            Err(RespError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_frame(b"*99999999\r\n", &l),
            Err(RespError::TooLarge { .. })
        ));
        assert!(parse_frame(b"$5\r\nabcdeXY", &l).is_err());
        assert!(parse_frame(b"$x\r\n", &l).is_err());
        assert!(parse_frame(b"!oops\r\n", &l).is_err());
        assert!(parse_frame(b"+ok\n", &l).is_err());
        assert!(parse_frame(&[b'+'; 100], &l).is_err(), "overlong line");
        assert!(parse_command(b"+OK\r\n", &l).is_err());
        assert!(parse_command(b"*1\r\n:1\r\n", &l).is_err());
        assert!(parse_command(b"*0\r\n", &l).is_err());
        let deep = "*1\r\n".repeat(20);
        assert!(
            parse_frame(deep.as_bytes(), &l).is_err(),
            "nesting is bounded"
        );
    }
}
