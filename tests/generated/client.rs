//! A pipelining RESP client on its own connection, a command builder, reply helpers and a
//! seeded PRNG for the generated-RDB test.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{encode_command, read_reply, Reply};

/// One command: its arguments as bytes.
#[derive(Debug, Clone)]
pub struct Cmd(pub Vec<Vec<u8>>);

impl Cmd {
    pub fn new(name: &str) -> Cmd {
        Cmd(vec![name.as_bytes().to_vec()])
    }

    pub fn arg(mut self, a: impl AsRef<[u8]>) -> Cmd {
        self.0.push(a.as_ref().to_vec());
        self
    }

    pub fn args<T: AsRef<[u8]>>(mut self, it: impl IntoIterator<Item = T>) -> Cmd {
        self.0.extend(it.into_iter().map(|a| a.as_ref().to_vec()));
        self
    }

    fn show(&self) -> String {
        let mut s = String::new();
        for a in self.0.iter().take(6) {
            let t = String::from_utf8_lossy(a);
            let t: String = t.chars().take(40).collect();
            s.push_str(&format!("{t:?} "));
        }
        if self.0.len() > 6 {
            s.push_str(&format!("… ({} args)", self.0.len()));
        }
        s
    }
}

/// A RESP2 connection that sends batches of commands before reading their replies.
pub struct Client {
    name: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    db: Option<u64>,
}

/// Commands per written batch (the replies of one batch are read before the next is sent).
const BATCH: usize = 256;

impl Client {
    pub fn connect(name: &str, port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("{name}: connect to port {port}: {e}"));
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        Client {
            name: name.to_string(),
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
            db: None,
        }
    }

    /// Run `cmds` pipelined; replies in order, error replies included.
    pub fn pipe_raw(&mut self, cmds: &[Cmd]) -> Vec<Reply> {
        let mut out = Vec::with_capacity(cmds.len());
        for chunk in cmds.chunks(BATCH) {
            let mut buf = Vec::new();
            for c in chunk {
                let args: Vec<&[u8]> = c.0.iter().map(Vec::as_slice).collect();
                buf.extend_from_slice(&encode_command(&args));
            }
            self.writer
                .write_all(&buf)
                .unwrap_or_else(|e| panic!("{}: write: {e}", self.name));
            for c in chunk {
                let r = read_reply(&mut self.reader)
                    .unwrap_or_else(|e| panic!("{}: reply to {}: {e}", self.name, c.show()));
                out.push(r);
            }
        }
        out
    }

    /// Run `cmds` pipelined; panics on the first error reply.
    pub fn pipe(&mut self, cmds: &[Cmd]) -> Vec<Reply> {
        let replies = self.pipe_raw(cmds);
        for (c, r) in cmds.iter().zip(&replies) {
            if let Reply::Error(e) = r {
                panic!("{}: {} -> error {e}", self.name, c.show());
            }
        }
        replies
    }

    /// One command; panics on an error reply.
    pub fn run(&mut self, c: Cmd) -> Reply {
        self.pipe(std::slice::from_ref(&c)).pop().unwrap()
    }

    pub fn select(&mut self, db: u64) {
        if self.db != Some(db) {
            self.run(Cmd::new("SELECT").arg(db.to_string()));
            self.db = Some(db);
        }
    }

    /// Whether the server knows `command` (`COMMAND INFO` answers a non-nil entry).
    pub fn has_command(&mut self, command: &str) -> bool {
        let r = self.run(Cmd::new("COMMAND").arg("INFO").arg(command));
        matches!(r.as_array(), Some([Reply::Array(Some(_))]))
    }
}

// ---------------------------------------------------------------------------------------------
// Reply helpers (panicking with context: the test's own expectations of the protocol)
// ---------------------------------------------------------------------------------------------

pub fn bytes(r: &Reply, what: &str) -> Vec<u8> {
    r.as_bytes()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {r:?}"))
        .to_vec()
}

pub fn text(r: &Reply, what: &str) -> String {
    String::from_utf8(bytes(r, what)).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"))
}

pub fn int(r: &Reply, what: &str) -> i64 {
    r.as_int()
        .unwrap_or_else(|| panic!("{what}: expected an integer, got {r:?}"))
}

pub fn array<'a>(r: &'a Reply, what: &str) -> &'a [Reply] {
    match r {
        Reply::Array(Some(a)) => a,
        Reply::Array(None) => &[],
        _ => panic!("{what}: expected an array, got {r:?}"),
    }
}

pub fn is_nil(r: &Reply) -> bool {
    matches!(r, Reply::Bulk(None) | Reply::Array(None))
}

/// A flat `[name, value, name, value, …]` reply as (name, value) pairs.
pub fn pairs<'a>(r: &'a Reply, what: &str) -> Vec<(String, &'a Reply)> {
    let a = array(r, what);
    assert!(
        a.len().is_multiple_of(2),
        "{what}: odd map length {}",
        a.len()
    );
    a.chunks(2).map(|p| (text(&p[0], what), &p[1])).collect()
}

/// Value of `name` in a flat map reply.
pub fn field<'a>(r: &'a Reply, name: &str, what: &str) -> Option<&'a Reply> {
    pairs(r, what)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

// ---------------------------------------------------------------------------------------------
// Deterministic data
// ---------------------------------------------------------------------------------------------

/// xorshift64*: small, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `len` bytes of any value (including 0x00 and 0xff).
    pub fn binary(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// `len` lowercase letters and digits.
    pub fn word(&mut self, len: usize) -> Vec<u8> {
        const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| A[self.below(A.len() as u64) as usize])
            .collect()
    }

    /// `len` bytes that LZF compresses well: a short random motif repeated with mutations.
    pub fn compressible(&mut self, len: usize) -> Vec<u8> {
        let motif = self.word(64);
        let mut v: Vec<u8> = motif.iter().cycle().take(len).copied().collect();
        for _ in 0..len / 200 {
            let i = self.below(len as u64) as usize;
            v[i] = self.next() as u8;
        }
        v
    }
}
