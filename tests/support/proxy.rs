//! A TCP proxy the test controls: where it forwards new connections (`upstream`), whether
//! they wait (`hold`), cutting every open connection (`cut`) — a failover or a network
//! partition without touching the servers — and bytes added to what the server sends
//! (`inject`), as a managed master's own additions to its replication stream. A proxy made
//! with [`proxy_tapped`] follows the replication protocol in what the server sends (replies,
//! the full-sync payload, then commands) and puts queued bytes between two commands of a
//! busy stream ([`Proxy::inject_between_commands`]).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Forwards connections to `upstream`; while `hold` is set, new connections wait before
/// being forwarded (the replica cannot reach the master).
pub struct Proxy {
    pub addr: String,
    pub upstream: Arc<Mutex<String>>,
    pub hold: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// The client side of every connection, written whole chunk by chunk under its lock
    /// (the server's bytes and injected ones never interleave inside a write).
    to_clients: Arc<Mutex<Vec<Arc<Mutex<TcpStream>>>>>,
    /// Bytes waiting for the next command boundary ([`proxy_tapped`] only).
    pending: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Bytes put into the stream so far at command boundaries.
    pub injected: Arc<AtomicI64>,
}

/// Where the server's side of a replication link stands.
enum Tap {
    /// Replies (`+PONG`, `+OK`, `+FULLRESYNC …`) and keepalive newlines.
    Replies,
    /// A `$<len>` payload: bytes left.
    Sized(usize),
    /// A `$EOF:<mark>` payload: the mark, and the last bytes seen (a mark may straddle reads).
    Mark(Vec<u8>, Vec<u8>),
    /// The command stream: `buf` starts at a command boundary.
    Commands,
}

/// The length of the whole command at the start of `b` (`*N` of `$L` bulks), if complete.
fn command_len(b: &[u8]) -> Option<usize> {
    let line = |at: usize| -> Option<(usize, usize)> {
        let end = at + b.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(b.get(at + 1..end)?)
            .ok()?
            .parse()
            .ok()?;
        Some((n, end + 2))
    };
    assert_eq!(
        b.first(),
        Some(&b'*'),
        "not a command: {:?}",
        String::from_utf8_lossy(&b[..b.len().min(40)])
    );
    let (n, mut at) = line(0)?;
    for _ in 0..n {
        if at >= b.len() {
            return None;
        }
        assert_eq!(b[at], b'$', "not a bulk string");
        let (len, next) = line(at)?;
        at = next + len + 2;
        if at > b.len() {
            return None;
        }
    }
    Some(at)
}

/// Server-to-client bytes of a replication link, with the queued injections put in at the
/// command boundaries they reach.
struct Tapper {
    state: Tap,
    buf: Vec<u8>,
    pending: Arc<Mutex<Vec<Vec<u8>>>>,
    injected: Arc<AtomicI64>,
}

impl Tapper {
    fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            match &mut self.state {
                Tap::Replies => {
                    if self.buf.first() == Some(&b'\n') {
                        out.push(b'\n');
                        self.buf.remove(0);
                        continue;
                    }
                    let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                        break;
                    };
                    let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                    out.extend_from_slice(&line);
                    let text = String::from_utf8_lossy(&line[..i]).into_owned();
                    if let Some(mark) = text.strip_prefix("$EOF:") {
                        self.state = Tap::Mark(mark.as_bytes().to_vec(), Vec::new());
                    } else if let Some(len) = text.strip_prefix('$') {
                        self.state = Tap::Sized(len.parse().expect("payload length"));
                    } else if text.starts_with("+CONTINUE") {
                        self.state = Tap::Commands;
                    }
                }
                Tap::Sized(left) => {
                    let n = (*left).min(self.buf.len());
                    out.extend(self.buf.drain(..n));
                    *left -= n;
                    if *left > 0 {
                        break;
                    }
                    self.state = Tap::Commands;
                }
                Tap::Mark(mark, tail) => {
                    let mut seen = std::mem::take(tail);
                    let kept = seen.len();
                    seen.extend_from_slice(&self.buf);
                    match seen.windows(mark.len()).position(|w| w == &mark[..]) {
                        Some(i) => {
                            let end = i + mark.len() - kept;
                            out.extend(self.buf.drain(..end));
                            self.state = Tap::Commands;
                        }
                        None => {
                            out.append(&mut self.buf);
                            let from = seen.len().saturating_sub(mark.len());
                            *tail = seen[from..].to_vec();
                            break;
                        }
                    }
                }
                Tap::Commands => {
                    for extra in self.pending.lock().unwrap().drain(..) {
                        self.injected
                            .fetch_add(extra.len() as i64, Ordering::Relaxed);
                        out.extend_from_slice(&extra);
                    }
                    if self.buf.is_empty() {
                        break;
                    }
                    let Some(n) = command_len(&self.buf) else {
                        break;
                    };
                    out.extend(self.buf.drain(..n));
                }
            }
        }
        out
    }
}

fn pipe_tapped(mut from: TcpStream, to: Arc<Mutex<TcpStream>>, mut tap: Tapper) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let out = tap.feed(&buf[..n]);
                if to.lock().unwrap().write_all(&out).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.lock().unwrap().shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

fn pipe(mut from: TcpStream, to: Arc<Mutex<TcpStream>>) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.lock().unwrap().write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.lock().unwrap().shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

pub fn proxy(upstream: String) -> Proxy {
    start(upstream, false)
}

/// A proxy whose server-to-client bytes are followed as a replication link, for
/// [`Proxy::inject_between_commands`].
pub fn proxy_tapped(upstream: String) -> Proxy {
    start(upstream, true)
}

fn start(upstream: String, tapped: bool) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let upstream = Arc::new(Mutex::new(upstream));
    let hold = Arc::new(AtomicBool::new(false));
    let open = Arc::new(Mutex::new(Vec::new()));
    let to_clients = Arc::new(Mutex::new(Vec::new()));
    let pending = Arc::new(Mutex::new(Vec::new()));
    let injected = Arc::new(AtomicI64::new(0));
    let (up, h, o, tc) = (
        upstream.clone(),
        hold.clone(),
        open.clone(),
        to_clients.clone(),
    );
    let (pe, inj) = (pending.clone(), injected.clone());
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(client) = c else { continue };
            while h.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let target = up.lock().unwrap().clone();
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            o.lock().unwrap().push(client.try_clone().unwrap());
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let c2 = Arc::new(Mutex::new(c2));
            tc.lock().unwrap().push(c2.clone());
            std::thread::spawn(move || pipe(client, Arc::new(Mutex::new(server))));
            if tapped {
                let tap = Tapper {
                    state: Tap::Replies,
                    buf: Vec::new(),
                    pending: pe.clone(),
                    injected: inj.clone(),
                };
                std::thread::spawn(move || pipe_tapped(s2, c2, tap));
            } else {
                std::thread::spawn(move || pipe(s2, c2));
            }
        }
    });
    Proxy {
        addr,
        upstream,
        hold,
        open,
        to_clients,
        pending,
        injected,
    }
}

impl Proxy {
    /// Close every connection made so far (new ones go to `upstream`).
    pub fn cut(&self) {
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.to_clients.lock().unwrap().clear();
    }

    /// Queue `bytes` for the next command boundary the server's stream reaches (a proxy
    /// from [`proxy_tapped`]; counted in `injected` once sent).
    pub fn inject_between_commands(&self, bytes: Vec<u8>) {
        self.pending.lock().unwrap().push(bytes);
    }

    /// Send `bytes` to every open connection's client as if the server had sent them,
    /// between two of the server's writes (the caller picks a quiet moment when it must
    /// fall between two commands). Returns the connections written to.
    pub fn inject(&self, bytes: &[u8]) -> usize {
        let mut n = 0;
        for c in self.to_clients.lock().unwrap().iter() {
            if c.lock().unwrap().write_all(bytes).is_ok() {
                n += 1;
            }
        }
        n
    }
}
