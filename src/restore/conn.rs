//! A plain client for a restore target: `redis[s]://` URLs, AUTH, TLS, one-off commands and
//! pipelined batches whose replies are matched to the keys they carry.
//!
//! Owns the wire side of a restore, not what is sent: it never decides which commands a
//! key needs, and never reads a reply it did not ask for. A leaf: it imports nothing of
//! its siblings.

use std::io::Write as _;
use std::time::Duration;

use crate::replication::link::{Link, LinkError};
use crate::replication::tls::TlsSettings;
use crate::resp::Frame;
use crate::server_version::ServerVersion;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Url(String),
    #[error("{addr}: {what}")]
    Target { addr: String, what: String },
}

/// Where to restore to, from `redis[s]://[user:pass@]host:port[/db]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetUrl {
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// host:port, as `connect` takes it.
    pub address: String,
}

fn percent_decode(s: &str) -> Result<String, ConnError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ConnError::Url(format!("bad %-escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConnError::Url("credentials are not UTF-8".into()))
}

impl TargetUrl {
    pub fn parse(url: &str) -> Result<TargetUrl, ConnError> {
        let bad = |why: &str| {
            ConnError::Url(format!(
                "--to: {why} (want redis[s]://[user:pass@]host:port)"
            ))
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("rediss://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("redis://") {
            (false, r)
        } else {
            return Err(bad("not a redis:// or rediss:// URL"));
        };
        let rest = rest.split('/').next().unwrap_or_default();
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (
                    Some(percent_decode(user)?).filter(|s| !s.is_empty()),
                    Some(percent_decode(pass)?),
                ),
                None => (None, Some(percent_decode(u)?)),
            },
        };
        let port_ok = hostport
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            return Err(bad("no host:port"));
        }
        Ok(TargetUrl {
            tls,
            username,
            password,
            address: hostport.to_string(),
        })
    }
}

/// Which key a pipelined command belongs to, so a refusal names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Name {
    pub db: u64,
    pub key: Vec<u8>,
    /// 0: a command of this key alone. n > 0: an `MSETNX`/`MSET` of `n` strings, `key`
    /// the first (all of them written, or, on a refusal, none).
    pub group: u32,
}

/// A target's refusal of one command that carried a key.
#[derive(Debug, Clone)]
pub struct Refused {
    pub name: Name,
    pub error: String,
}

/// Commands encoded back to back, with what each one carries (`None`: a command whose
/// refusal stops the restore, such as SELECT).
#[derive(Debug, Default)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub names: Vec<Option<Name>>,
}

impl Batch {
    pub fn push(&mut self, args: &[&[u8]], name: Option<Name>) {
        encode(args, &mut self.bytes);
        self.names.push(name);
    }

    /// A command whose leading arguments are `head` and whose other `args` arguments
    /// are already RESP-encoded in `tail` ([`encode_bulk`]).
    pub fn push_encoded(&mut self, head: &[&[u8]], tail: &[u8], args: usize, name: Option<Name>) {
        let _ = write!(self.bytes, "*{}\r\n", head.len() + args);
        for a in head {
            encode_bulk(a, &mut self.bytes);
        }
        self.bytes.extend_from_slice(tail);
        self.names.push(name);
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// One RESP bulk string.
pub fn encode_bulk(a: &[u8], out: &mut Vec<u8>) {
    let _ = write!(out, "${}\r\n", a.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b"\r\n");
}

/// RESP encoding of one command, without a temporary string per argument.
fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    let _ = write!(out, "*{}\r\n", args.len());
    for a in args {
        encode_bulk(a, out);
    }
}

/// A connection to the target.
pub struct Conn {
    link: Link,
    addr: String,
}

impl Conn {
    pub fn connect(
        url: &TargetUrl,
        tls: Option<&TlsSettings>,
        timeout: Duration,
    ) -> Result<Conn, ConnError> {
        let addr = url.address.clone();
        let fail = |what: String| ConnError::Target {
            addr: addr.clone(),
            what,
        };
        let default_tls = TlsSettings::default();
        let tls = if url.tls {
            Some(tls.unwrap_or(&default_tls))
        } else {
            None
        };
        let link = Link::connect(&addr, timeout, tls).map_err(|e| match e {
            // The address is already the line's first word: the cause alone.
            LinkError::Connect { err, .. } => fail(format!("cannot connect: {err}")),
            e => fail(e.to_string()),
        })?;
        let mut c = Conn {
            link,
            addr: addr.clone(),
        };
        if let Some(p) = &url.password {
            let r = match &url.username {
                Some(u) => c.call(&[b"AUTH", u.as_bytes(), p.as_bytes()]),
                None => c.call(&[b"AUTH", p.as_bytes()]),
            };
            r.map_err(|e| fail(format!("AUTH: {e}")))?;
        }
        Ok(c)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// This side's address of the connection: where the target sees it from.
    pub fn local_ip(&self) -> Option<std::net::IpAddr> {
        self.link.local_ip()
    }

    /// How long to wait for a reply (a big dataset's DEBUG DIGEST takes a while).
    pub fn set_read_timeout(&self, t: Duration) {
        let _ = self.link.set_read_timeout(t);
    }

    pub fn fail(&self, what: String) -> ConnError {
        ConnError::Target {
            addr: self.addr.clone(),
            what,
        }
    }

    /// One command, answered before returning; an error reply is `Err`.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Frame, String> {
        self.link.send(args).map_err(|e| e.to_string())?;
        match self.link.read_frame().map_err(|e| e.to_string())? {
            Frame::Error(e) => Err(String::from_utf8_lossy(&e).into_owned()),
            f => Ok(f),
        }
    }

    pub fn text(&mut self, args: &[&[u8]]) -> Result<String, ConnError> {
        match self.call(args) {
            Ok(Frame::Simple(b) | Frame::Bulk(Some(b))) => {
                Ok(String::from_utf8_lossy(&b).into_owned())
            }
            Ok(Frame::Integer(i)) => Ok(i.to_string()),
            Ok(_) => Ok(String::new()),
            Err(e) => Err(self.fail(format!("{}: {e}", String::from_utf8_lossy(args[0])))),
        }
    }

    /// Write a batch without waiting for its replies.
    pub fn write_batch(&mut self, b: &Batch) -> Result<(), ConnError> {
        self.link
            .write_all(&b.bytes)
            .map_err(|e| self.fail(format!("write: {e}")))
    }

    /// Read the replies of a batch written before. A refused command that names a key is
    /// returned; one that does not is an error. A nil reply (`SET … NX` on an existing
    /// key), or 0 from an `MSETNX`, is the refusal RESTORE would have given.
    pub fn read_replies(&mut self, names: Vec<Option<Name>>) -> Result<Vec<Refused>, ConnError> {
        let mut refused = Vec::new();
        for name in names {
            let f = self
                .link
                .read_frame()
                .map_err(|e| self.fail(format!("reply: {e}")))?;
            let error = match (f, &name) {
                (Frame::Error(e), _) => String::from_utf8_lossy(&e).into_owned(),
                (Frame::Bulk(None), _) => "BUSYKEY Target key name already exists.".to_string(),
                // MSETNX writes none of its keys when one exists.
                (Frame::Integer(0), Some(n)) if n.group > 0 => format!(
                    "BUSYKEY one of the {} keys sent together from this one on (MSETNX) already exists; none of them was written",
                    n.group
                ),
                _ => continue,
            };
            match name {
                Some(name) => refused.push(Refused { name, error }),
                None => return Err(self.fail(error)),
            }
        }
        Ok(refused)
    }

    /// Keys in every database, from `INFO keyspace`.
    pub fn keys(&mut self) -> Result<u64, ConnError> {
        let info = self.text(&[b"INFO", b"keyspace"])?;
        Ok(info
            .lines()
            .filter_map(|l| {
                l.split_once("keys=")?
                    .1
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum())
    }

    /// The target's `proto-max-bulk-len`: the longest argument it accepts. A server that
    /// refuses CONFIG (ElastiCache) is taken to have the default, 512 MB.
    pub fn max_bulk(&mut self) -> u64 {
        match self.call(&[b"CONFIG", b"GET", b"proto-max-bulk-len"]) {
            Ok(Frame::Array(Some(v))) => match v.get(1) {
                Some(Frame::Bulk(Some(b))) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(512 << 20),
                _ => 512 << 20,
            },
            _ => 512 << 20,
        }
    }

    /// The target's version, from `INFO server`.
    pub fn version(&mut self) -> Result<ServerVersion, ConnError> {
        let info = self.text(&[b"INFO", b"server"])?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let v = match field("valkey_version:") {
            Some(v) => format!("valkey-{v}"),
            None => format!("redis-{}", field("redis_version:").unwrap_or_default()),
        };
        v.parse()
            .map_err(|e| self.fail(format!("version {v}: {e}")))
    }
}
