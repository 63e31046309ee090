//! A TCP proxy the test controls: where it forwards new connections (`upstream`), whether
//! they wait (`hold`), cutting every open connection (`cut`) — a failover or a network
//! partition without touching the servers — and bytes added to what the server sends
//! (`inject`), as a managed master's own additions to its replication stream. A proxy made
//! with [`proxy_tapped`] follows the replication protocol in what the server sends (replies,
//! the full-sync payload, then commands) and puts queued bytes between two commands of a
//! busy stream ([`Proxy::inject_between_commands`]). It also records the name of every
//! command each client sent (`sent`), and follows the server's side of a connection as a
//! replication link only once its client sent the PSYNC command (`PSYNC`, `SYNC`, or a name
//! given to [`Proxy::replication_command`]): other connections (a poller's `INFO`) pass as
//! they are. [`tls_front`] and [`tls_back`] put TLS on either side of such a proxy, so the
//! plain bytes in the middle can be watched and added to on a TLS link.
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
    /// The name (upper case) of every command the clients sent, in order ([`proxy_tapped`]).
    pub sent: Arc<Mutex<Vec<String>>>,
    /// Command names (upper case) after which a connection is a replication link.
    replication_names: Arc<Mutex<Vec<String>>>,
    /// Armed (≥ 0): the next full-sync payload ([`proxy_tapped`]) is cut once this many of
    /// its bytes have passed; then back to -1. See [`Proxy::cut_in_payload`].
    payload_cut: Arc<AtomicI64>,
    /// Payloads cut so far by [`Proxy::cut_in_payload`].
    pub payload_cuts: Arc<AtomicI64>,
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
    /// Payload bytes passed so far on this link.
    payload_seen: i64,
}

impl Tapper {
    fn in_payload(&self) -> bool {
        matches!(self.state, Tap::Sized(_) | Tap::Mark(..))
    }
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
                    } else if text.starts_with("$ENDOFF:") {
                        // Valkey's rdb channel: the `$EOF:` payload follows.
                    } else if let Some(len) = text.strip_prefix('$') {
                        self.state = Tap::Sized(len.parse().expect("payload length"));
                    } else if text.starts_with("+CONTINUE") || text.starts_with("+RDBCHANNELSYNC") {
                        // Redis 8's main link carries the stream right after
                        // `+RDBCHANNELSYNC` (the payload goes on the rdb channel).
                        self.state = Tap::Commands;
                    }
                }
                Tap::Sized(left) => {
                    let n = (*left).min(self.buf.len());
                    self.payload_seen += n as i64;
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
                            self.payload_seen += self.buf.len() as i64;
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

fn pipe_tapped(
    mut from: TcpStream,
    to: Arc<Mutex<TcpStream>>,
    mut tap: Tapper,
    replication: Arc<AtomicBool>,
    cut: (Arc<AtomicI64>, Arc<AtomicI64>),
) {
    let mut buf = [0u8; 16384];
    loop {
        // An armed payload cut: this link's payload has passed the given byte count.
        let armed = cut.0.load(Ordering::SeqCst);
        if armed >= 0
            && tap.in_payload()
            && tap.payload_seen >= armed
            && cut
                .0
                .compare_exchange(armed, -1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            cut.1.fetch_add(1, Ordering::SeqCst);
            break;
        }
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // Before the client's PSYNC the server only answers commands: passed as is.
                let out = if replication.load(Ordering::SeqCst) {
                    tap.feed(&buf[..n])
                } else {
                    buf[..n].to_vec()
                };
                if to.lock().unwrap().write_all(&out).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.lock().unwrap().shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// The name and whole length of the command at the start of `b`, if complete; `Err` when
/// `b` does not start with a RESP array of bulk strings (nothing more is parsed).
fn client_command(b: &[u8]) -> Result<Option<(String, usize)>, ()> {
    if b.first() != Some(&b'*') {
        return Err(());
    }
    let Some(len) = command_len(b) else {
        return Ok(None);
    };
    let at = b.windows(2).position(|w| w == b"\r\n").ok_or(())? + 2;
    let name = if b.get(at) == Some(&b'$') {
        let end = at + b[at..].windows(2).position(|w| w == b"\r\n").ok_or(())?;
        let n: usize = std::str::from_utf8(&b[at + 1..end])
            .map_err(|_| ())?
            .parse()
            .map_err(|_| ())?;
        String::from_utf8_lossy(&b[end + 2..end + 2 + n]).to_ascii_uppercase()
    } else {
        String::new()
    };
    Ok(Some((name, len)))
}

/// Client-to-server bytes of a [`proxy_tapped`] connection: each command's name recorded;
/// `replication` set before a replication command is passed on.
fn pipe_watched(
    mut from: TcpStream,
    to: Arc<Mutex<TcpStream>>,
    sent: Arc<Mutex<Vec<String>>>,
    names: Arc<Mutex<Vec<String>>>,
    replication: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 16384];
    let mut pending: Vec<u8> = Vec::new();
    let mut parsing = true;
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while parsing && !pending.is_empty() {
                    match client_command(&pending) {
                        Ok(Some((name, len))) => {
                            if names.lock().unwrap().contains(&name) {
                                replication.store(true, Ordering::SeqCst);
                            }
                            sent.lock().unwrap().push(name);
                            pending.drain(..len);
                        }
                        Ok(None) => break,
                        Err(()) => {
                            sent.lock().unwrap().push("<not RESP>".into());
                            parsing = false;
                        }
                    }
                }
                if !parsing {
                    pending.clear();
                }
                if to.lock().unwrap().write_all(&buf[..n]).is_err() {
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
    let sent = Arc::new(Mutex::new(Vec::new()));
    let payload_cut = Arc::new(AtomicI64::new(-1));
    let payload_cuts = Arc::new(AtomicI64::new(0));
    let cut = (payload_cut.clone(), payload_cuts.clone());
    let replication_names = Arc::new(Mutex::new(vec!["PSYNC".to_string(), "SYNC".to_string()]));
    let (se, rn) = (sent.clone(), replication_names.clone());
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
            if tapped {
                let replication = Arc::new(AtomicBool::new(false));
                let (se, rn, r2) = (se.clone(), rn.clone(), replication.clone());
                std::thread::spawn(move || {
                    pipe_watched(client, Arc::new(Mutex::new(server)), se, rn, r2)
                });
                let tap = Tapper {
                    state: Tap::Replies,
                    buf: Vec::new(),
                    pending: pe.clone(),
                    injected: inj.clone(),
                    payload_seen: 0,
                };
                let cut = cut.clone();
                std::thread::spawn(move || pipe_tapped(s2, c2, tap, replication, cut));
            } else {
                std::thread::spawn(move || pipe(client, Arc::new(Mutex::new(server))));
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
        sent,
        replication_names,
        payload_cut,
        payload_cuts,
    }
}

impl Proxy {
    /// A renamed PSYNC: connections whose client sends `name` are replication links too.
    pub fn replication_command(&self, name: &str) {
        self.replication_names
            .lock()
            .unwrap()
            .push(name.to_ascii_uppercase());
    }

    /// Close every connection made so far (new ones go to `upstream`).
    pub fn cut(&self) {
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.to_clients.lock().unwrap().clear();
    }

    /// Arm a cut inside the next full-sync payload on a [`proxy_tapped`] link: once `after`
    /// of its bytes have passed (checked between reads, so up to one read later), that
    /// connection is closed and `payload_cuts` counts it. `None` disarms.
    pub fn cut_in_payload(&self, after: Option<u64>) {
        let v = after.map_or(-1, |a| a.min(i64::MAX as u64) as i64);
        self.payload_cut.store(v, Ordering::SeqCst);
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

// ---------------------------------------------------------------------------------------------
// TLS on either side of a proxy
// ---------------------------------------------------------------------------------------------

trait Rw: Read + Write + Send {}
impl<T: Read + Write + Send> Rw for T {}

fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// `write_all` through a socket with a read timeout (rustls may read while it writes,
/// e.g. to finish its handshake): a timeout is retried, not an error.
fn write_all_retry(w: &mut dyn Rw, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match w.write(data) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if would_block(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    loop {
        match w.flush() {
            Ok(()) => return Ok(()),
            Err(e) if would_block(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// One thread moves bytes both ways between a TLS stream and a plain one; both sockets
/// have a short read timeout, so neither side waits on the other.
fn pump(mut tls: Box<dyn Rw>, mut plain: TcpStream) {
    let _ = plain.set_read_timeout(Some(Duration::from_millis(2)));
    let mut buf = vec![0u8; 65536];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if plain.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if would_block(&e) => {}
            Err(_) => break,
        }
        match plain.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if write_all_retry(tls.as_mut(), &buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if would_block(&e) => {}
            Err(_) => break,
        }
    }
    let _ = plain.shutdown(Shutdown::Both);
}

fn pem_chain(cert: &std::path::Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .expect("certificate file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates")
}

/// A TLS server on a free port (certificate `cert`, key `key`, no client certificates)
/// whose connections are forwarded in plain TCP to `upstream`. Returns its address.
pub fn tls_front(upstream: String, cert: &std::path::Path, key: &std::path::Path) -> String {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            pem_chain(cert),
            rustls::pki_types::PrivateKeyDer::from_pem_file(key).expect("key file"),
        )
        .expect("server config");
    let config = Arc::new(config);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(client) = c else { continue };
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let _ = client.set_read_timeout(Some(Duration::from_millis(2)));
            let conn = rustls::ServerConnection::new(config.clone()).expect("TLS session");
            let tls = Box::new(rustls::StreamOwned::new(conn, client));
            std::thread::spawn(move || pump(tls, server));
        }
    });
    addr
}

/// A plain TCP server on a free port whose connections are forwarded over TLS to
/// `tls_upstream` (a 127.0.0.1 address), verified with the CA in `ca`. Returns its address.
pub fn tls_back(tls_upstream: String, ca: &std::path::Path) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_chain(ca) {
        roots.add(c).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(client) = c else { continue };
            let Ok(server) = TcpStream::connect(&tls_upstream) else {
                continue;
            };
            let _ = server.set_read_timeout(Some(Duration::from_millis(2)));
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let conn = rustls::ClientConnection::new(config.clone(), name).expect("TLS session");
            let tls = Box::new(rustls::StreamOwned::new(conn, server));
            std::thread::spawn(move || pump(tls, client));
        }
    });
    addr
}
