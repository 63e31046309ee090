//! The connection to the master: a TCP stream with an input buffer, RESP in and out.
//!
//! Owns reading whole frames (replies, commands) and raw bytes (the sync payload) from one
//! buffer, so nothing read ahead is ever lost between the phases of the protocol. Every
//! read has a timeout: a master that stalls is an error, never a hang. A read waits in
//! slices of at most [`READ_SLICE`], so a stop asked for ends it within that
//! ([`LinkError::Stopped`]), and a link with an idle limit that saw no byte for that long
//! ends with [`LinkError::Stalled`] (the `[source] timeout`), whatever the caller's own
//! read timeout. It must never drop a byte it read ahead, nor wait without bound.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};

use crate::heartbeat::Heartbeat;
use crate::resp::{self, Frame, Limits, Parsed};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("connect to {addr}: {err}")]
    Connect { addr: String, err: io::Error },
    #[error("link I/O: {0}")]
    Io(#[from] io::Error),
    #[error("master closed the connection")]
    Closed,
    #[error("{0}")]
    Protocol(#[from] resp::RespError),
    #[error("{0}")]
    Tls(#[from] super::tls::TlsError),
    #[error("master silent for {}s (nothing, not even a PING; [source] timeout)", .0.as_secs())]
    Stalled(Duration),
    #[error("stopped")]
    Stopped,
}

/// The longest a single socket read waits: how soon a stop or a stall is noticed.
pub const READ_SLICE: Duration = Duration::from_millis(250);

pub use super::status::IoClock;

/// The byte stream under the link: plain TCP or TLS over it.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(t) => &t.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(b),
            Conn::Tls(t) => t.read(b),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(b),
            Conn::Tls(t) => t.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(t) => t.flush(),
        }
    }
}

pub struct Link {
    stream: Conn,
    buf: Vec<u8>,
    /// `buf[..start]` has been consumed.
    start: usize,
    pub limits: Limits,
    /// Beaten on every read that returns (data, timeout or error): the replica's liveness.
    pub heartbeat: Option<Arc<Heartbeat>>,
    /// A read waits at most this long in all, in µs (the socket's own timeout is a slice of
    /// it); atomic so `set_read_timeout` keeps taking `&self`.
    read_timeout_us: AtomicU64,
    /// Once true, a waiting read ends with [`LinkError::Stopped`].
    pub stop: Option<Arc<AtomicBool>>,
    /// A link that received nothing for this long is [`LinkError::Stalled`].
    pub idle_limit: Option<Duration>,
    /// Told of every byte received and of a stall.
    pub io_clock: Option<Arc<IoClock>>,
    last_data: Instant,
}

const READ_CHUNK: usize = 64 * 1024;

impl Link {
    pub fn connect(
        addr: &str,
        timeout: Duration,
        tls: Option<&super::tls::TlsSettings>,
    ) -> Result<Link, LinkError> {
        let err = |err| LinkError::Connect {
            addr: addr.to_string(),
            err,
        };
        let sa = addr
            .to_socket_addrs()
            .map_err(err)?
            .next()
            .ok_or_else(|| err(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
        let stream = TcpStream::connect_timeout(&sa, timeout).map_err(err)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout.min(READ_SLICE)))?;
        stream.set_write_timeout(Some(timeout))?;
        let stream = match tls {
            None => Conn::Plain(stream),
            Some(t) => {
                let cfg = super::tls::client_config(t)?;
                let name = super::tls::server_name(t, addr)?;
                let conn = ClientConnection::new(cfg, name)
                    .map_err(|e| super::tls::TlsError::Config(e.to_string()))?;
                let mut s = StreamOwned::new(conn, stream);
                // Complete the TLS handshake now, so certificate errors surface here.
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock)?;
                }
                Conn::Tls(Box::new(s))
            }
        };
        Ok(Link {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            limits: Limits::default(),
            heartbeat: None,
            read_timeout_us: AtomicU64::new(timeout.as_micros() as u64),
            stop: None,
            idle_limit: None,
            io_clock: None,
            last_data: Instant::now(),
        })
    }

    /// This side's address of the connection.
    pub fn local_ip(&self) -> Option<std::net::IpAddr> {
        self.stream.tcp().local_addr().ok().map(|a| a.ip())
    }

    /// How long one [`Link::fill`] may wait for bytes before its timeout error.
    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        self.read_timeout_us
            .store(t.as_micros() as u64, Ordering::Relaxed);
        self.stream.tcp().set_read_timeout(Some(t.min(READ_SLICE)))
    }

    pub fn send(&mut self, args: &[&[u8]]) -> Result<(), LinkError> {
        let mut out = Vec::new();
        resp::encode_command(args, &mut out);
        self.write_all(&out)?;
        Ok(())
    }

    /// Unconsumed input.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Put bytes back in front of the input (what a payload reader read past its end).
    pub fn unread(&mut self, bytes: &[u8]) {
        let mut v = bytes.to_vec();
        v.extend_from_slice(&self.buf[self.start..]);
        self.buf = v;
        self.start = 0;
    }

    /// Read more bytes from the socket into the buffer; errors on end of stream. It only
    /// appends to [`Link::buffered`] (compacting moves the bytes, not their place in it), so
    /// a parser's positions there stay valid until [`Link::consume`]; the buffer grows by
    /// doubling, so a frame of n bytes costs O(n) here whatever the number of reads.
    pub fn fill(&mut self) -> Result<usize, LinkError> {
        // A stop is honoured before every read, not only when one times out: a full sync
        // that keeps trickling in never times out, and SIGTERM must not wait for its end.
        if self.stop_asked() {
            return Err(LinkError::Stopped);
        }
        if self.start > 0 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK, 0);
        let started = Instant::now();
        let r = loop {
            let r = self.stream.read(&mut self.buf[len..]);
            if let Some(h) = &self.heartbeat {
                h.beat();
            }
            match r {
                Ok(0) => break Err(LinkError::Closed),
                Ok(n) => break Ok(n),
                Err(e) if is_timeout(&e) => {
                    if self.stop_asked() {
                        break Err(LinkError::Stopped);
                    }
                    if let Some(limit) = self.idle_limit {
                        if self.last_data.elapsed() >= limit {
                            if let Some(c) = &self.io_clock {
                                c.stalled();
                            }
                            break Err(LinkError::Stalled(limit));
                        }
                    }
                    let limit = Duration::from_micros(self.read_timeout_us.load(Ordering::Relaxed));
                    if started.elapsed() >= limit {
                        break Err(LinkError::Io(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(LinkError::Io(e)),
            }
        };
        match r {
            Ok(n) => {
                self.buf.truncate(len + n);
                self.last_data = Instant::now();
                if let Some(c) = &self.io_clock {
                    c.touch();
                }
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(len);
                Err(e)
            }
        }
    }

    fn stop_asked(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// Read until the buffer holds at least `n` unconsumed bytes.
    pub fn fill_to(&mut self, n: usize) -> Result<(), LinkError> {
        while self.buffered().len() < n {
            self.fill()?;
        }
        Ok(())
    }

    /// Skip the bare newlines a master sends to keep a waiting replica's link alive (before
    /// its PSYNC reply while a diskless sync waits to start, and before the payload).
    pub fn skip_keepalives(&mut self) -> Result<(), LinkError> {
        loop {
            let n = self.buffered().iter().take_while(|&&b| b == b'\n').count();
            self.consume(n);
            if !self.buffered().is_empty() {
                return Ok(());
            }
            self.fill()?;
        }
    }

    /// One reply frame.
    pub fn read_frame(&mut self) -> Result<Frame, LinkError> {
        loop {
            match resp::parse_frame(self.buffered(), &self.limits)? {
                Parsed::Done(f, used) => {
                    self.consume(used);
                    return Ok(f);
                }
                Parsed::Incomplete(need) => self.fill_to(need)?,
            }
        }
    }

    /// Write raw bytes (ACKs from the stream loop).
    pub fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.stream.write_all(b)?;
        self.stream.flush()
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A `Read` over the link's buffer then its socket, for feeding the RDB reader. With a
/// length (disk-based sync) it never reads past it; without (diskless) it may read ahead,
/// and the caller hands back what followed the file with [`Link::unread`].
pub struct PayloadReader<'a> {
    pub link: &'a mut Link,
    pub remaining: Option<u64>,
    pub read: u64,
}

impl Read for PayloadReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let cap = match self.remaining {
            Some(0) => return Ok(0),
            Some(r) => out.len().min(r.min(usize::MAX as u64) as usize),
            None => out.len(),
        };
        if self.link.buffered().is_empty() {
            match self.link.fill() {
                Ok(_) => {}
                Err(LinkError::Io(e)) => return Err(e),
                Err(LinkError::Closed) => return Ok(0),
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
        let avail = self.link.buffered();
        let n = cap.min(avail.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.link.consume(n);
        if let Some(r) = self.remaining.as_mut() {
            *r -= n as u64;
        }
        self.read += n as u64;
        Ok(n)
    }
}
