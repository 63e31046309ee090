//! Restoring by one full sync (`restore --via-sync`): the target is made a replica of this
//! process for as long as one full sync takes, is sent the snapshot as the RDB payload of
//! that sync (written for the target's version, as it streams), loads it the way it loads
//! any RDB (its dictionaries sized from the file's hints, no command parsed per key), and
//! is made a master again. The target's `repl-diskless-load` is set to `on-empty-db` for
//! the sync when it lets us (so it loads while the payload arrives instead of after), and
//! put back.
//!
//! Owns the master's side of that one sync ([`Offer`], [`handshake`]), the payload
//! ([`SyncSink`]) and the way back ([`restore`]). It must never point a target at this
//! process before it was checked empty of keys and function libraries (or the caller asked
//! to flush it: a full sync replaces both), must never leave a target a replica (every
//! path after `REPLICAOF` ends with `REPLICAOF NO ONE` and the config it changed put back),
//! and must never send the target anything but the handshake's replies and one RDB.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::{RestoreError, RestoreOptions, RestoreSummary};
use crate::digest::{ParallelDigest, Rules};
use crate::rdb::writer::{KeyRecord, RdbWriter, Target, WriteOptions};
use crate::rdb::{decode_value, view, Dialect, KeyEntry};
use crate::resp::{parse_frame, Frame, Limits, Parsed};

/// How long the target may take to connect and to finish its handshake.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(30);
/// How often the target is asked whether it has loaded the payload.
const POLL: Duration = Duration::from_millis(20);

/// The listening side of the sync: where the target is told to connect.
pub(crate) struct Offer {
    listener: TcpListener,
    pub host: String,
    pub port: u16,
}

impl Offer {
    /// Listen on `address` (`HOST` or `HOST:PORT`; default: `local`, this side of the
    /// connection to the target, the address the target sees this process at) on its port
    /// or any free one.
    pub fn open(address: Option<&str>, local: IpAddr) -> Result<Offer, String> {
        let (host, port) = match address {
            None => (local.to_string(), 0),
            Some(a) => match a.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && !h.ends_with(':') => (
                    h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    p.parse::<u16>()
                        .map_err(|_| format!("--sync-address {a}: the port is not a number"))?,
                ),
                _ => (a.to_string(), 0),
            },
        };
        let ip: IpAddr = host
            .parse()
            .map_err(|_| format!("--sync-address {host}: not an IP address"))?;
        let listener = TcpListener::bind(SocketAddr::new(ip, port))
            .map_err(|e| format!("cannot listen on {host}:{port} for the sync: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("cannot listen for the sync: {e}"))?
            .port();
        Ok(Offer {
            listener,
            host,
            port,
        })
    }

    /// The target's connection, once it comes (within `wait`).
    fn accept(&self, wait: Duration) -> Result<TcpStream, String> {
        let deadline = Instant::now() + wait;
        self.listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).map_err(|e| e.to_string())?;
                    s.set_nodelay(true).map_err(|e| e.to_string())?;
                    return Ok(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("accepting the target's connection: {e}")),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the target did not connect to {}:{} within {} s (is this address reachable from it? pick one with --sync-address)",
                    self.host,
                    self.port,
                    wait.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the target connected again (it does when it could not load a payload).
    fn reconnected(&self) -> bool {
        self.listener.accept().is_ok()
    }
}

/// Answers a replica's handshake (`PING`, `AUTH`, `REPLCONF …`) up to its `PSYNC` or
/// `SYNC`, which gets a full resync; then the payload's EOF-marked header is written.
/// Returns the 40-byte end mark the payload must be followed by.
pub(crate) fn handshake(s: &mut TcpStream) -> Result<[u8; 40], String> {
    s.set_read_timeout(Some(HANDSHAKE_WAIT))
        .map_err(|e| e.to_string())?;
    let limits = Limits::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut eof_capable = false;
    let mut chunk = [0u8; 4096];
    loop {
        let (args, used) = match parse_frame(&buf, &limits) {
            Ok(Parsed::Done(Frame::Array(Some(items)), n)) => (items, n),
            Ok(Parsed::Done(f, _)) => return Err(format!("the target sent {f}, not a command")),
            Ok(Parsed::Incomplete(_)) => {
                if buf.len() > 64 << 10 {
                    return Err("the target's handshake is longer than 64 KiB".into());
                }
                let n = s
                    .read(&mut chunk)
                    .map_err(|e| format!("reading the target's handshake: {e}"))?;
                if n == 0 {
                    return Err("the target closed the connection during its handshake".into());
                }
                buf.extend_from_slice(&chunk[..n]);
                continue;
            }
            Err(e) => return Err(format!("the target's handshake: {e}")),
        };
        buf.drain(..used);
        let words: Vec<Vec<u8>> = args
            .into_iter()
            .map(|f| match f {
                Frame::Bulk(Some(b)) => b.to_ascii_lowercase(),
                _ => Vec::new(),
            })
            .collect();
        let reply: Vec<u8> = match words.first().map(Vec::as_slice) {
            Some(b"ping") => b"+PONG\r\n".to_vec(),
            Some(b"auth") => b"+OK\r\n".to_vec(),
            Some(b"replconf") => {
                if words.windows(2).any(|w| w[0] == b"capa" && w[1] == b"eof") {
                    eof_capable = true;
                }
                b"+OK\r\n".to_vec()
            }
            Some(b"psync") | Some(b"sync") => {
                if !eof_capable {
                    return Err("the target did not offer to take an EOF-marked payload (REPLCONF capa eof); every supported version does".into());
                }
                let id = hex40();
                let mark = hex40();
                let mut head =
                    format!("+FULLRESYNC {} 0\r\n$EOF:", String::from_utf8_lossy(&id)).into_bytes();
                head.extend_from_slice(&mark);
                head.extend_from_slice(b"\r\n");
                s.write_all(&head)
                    .map_err(|e| format!("writing to the target: {e}"))?;
                return Ok(mark);
            }
            _ => {
                let name = String::from_utf8_lossy(words.first().map_or(&[][..], |w| w));
                return Err(format!("the target sent {name} during its handshake"));
            }
        };
        s.write_all(&reply)
            .map_err(|e| format!("writing to the target: {e}"))?;
    }
}

/// 40 random hex digits (a replication id, an end mark).
fn hex40() -> [u8; 40] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 40];
    let state = std::collections::hash_map::RandomState::new();
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let v = h.finish();
        for (j, c) in chunk.iter_mut().enumerate() {
            *c = b"0123456789abcdef"[((v >> (4 * j)) & 15) as usize];
        }
    }
    out
}

/// The payload: every key the feeder gives, written for the target as an RDB.
pub(crate) struct SyncSink {
    w: RdbWriter<TcpStream>,
    pub s: RestoreSummary,
    digester: Option<ParallelDigest>,
    rules: Rules,
    dbs: Vec<u64>,
    now_ms: i64,
    /// The database the keys written last are in.
    db: Option<u64>,
    /// The source's size hints, by database, written when the database is selected.
    hints: Vec<(u64, u64, u64)>,
}

impl SyncSink {
    fn new(
        stream: TcpStream,
        target: Target,
        rules: Rules,
        summary: RestoreSummary,
        digester: Option<ParallelDigest>,
        opts: &RestoreOptions,
        now_ms: i64,
    ) -> Result<Self, RestoreError> {
        let w = RdbWriter::new(stream, target, WriteOptions { compress: false })
            .map_err(|e| RestoreError::Source(e.to_string()))?;
        Ok(SyncSink {
            w,
            s: summary,
            digester,
            rules,
            dbs: opts.dbs.clone(),
            now_ms,
            db: None,
            hints: Vec::new(),
        })
    }

    fn write_err(&self, e: impl std::fmt::Display) -> RestoreError {
        RestoreError::Source(format!("writing the sync's payload: {e}"))
    }

    /// The source's RESIZEDB for `db`: the target sizes its tables from it.
    pub fn resize_hint(&mut self, db: u64, keys: u64, expires: u64) {
        self.hints.retain(|h| h.0 != db);
        self.hints.push((db, keys, expires));
    }

    pub fn function(&mut self, code: &[u8]) -> Result<(), RestoreError> {
        self.w.function(code).map_err(|e| self.write_err(e))?;
        self.s.functions += 1;
        Ok(())
    }

    /// Whether `k` is to be written (its database wanted, `loadable` now); when it is,
    /// its database is selected.
    fn admit(&mut self, k: &KeyEntry, loadable: bool) -> Result<bool, RestoreError> {
        if !self.dbs.is_empty() && !self.dbs.contains(&k.db) {
            return Ok(false);
        }
        if !loadable {
            self.s.keys_expired_skipped += 1;
            return Ok(false);
        }
        if self.db != Some(k.db) {
            self.w.select_db(k.db).map_err(|e| self.write_err(e))?;
            if let Some(&(_, keys, expires)) = self.hints.iter().find(|h| h.0 == k.db) {
                self.w
                    .resize_db(keys, expires)
                    .map_err(|e| self.write_err(e))?;
            }
            self.db = Some(k.db);
        }
        Ok(true)
    }

    /// A key the reader only framed: a collection the target loads in this encoding is
    /// written as the file holds it, anything else decoded and written by [`Self::key`].
    pub fn key_encoded(
        &mut self,
        mut k: Box<KeyEntry>,
        value_at: u64,
        encoded: Vec<u8>,
    ) -> Result<(), RestoreError> {
        let ty = k.rdb_type;
        let as_is = ty != crate::rdb::types::STRING
            && k.meta.is_empty()
            && self.rules.knows_type(ty, Dialect::Redis);
        let elements = as_is
            .then(|| view::pieces(ty, &encoded).and_then(|p| p.elements().map(|e| e.len())))
            .flatten();
        let Some(elements) = elements else {
            k.value = match view::string_value(ty, encoded) {
                Ok(v) => v,
                Err(encoded) => decode_value(ty, &encoded, Dialect::Redis).map_err(|mut e| {
                    e.offset += value_at;
                    RestoreError::Source(e.with_key(&k.key).to_string())
                })?,
            };
            return self.key(k);
        };
        let expired = matches!(k.expire_ms, Some(t) if t < self.now_ms);
        // An empty collection is dropped, as a server drops it on load.
        if elements == 0 || !self.admit(&k, !expired)? {
            return Ok(());
        }
        self.w
            .key_encoded(&KeyRecord::from(&*k), ty, &encoded)
            .map_err(|e| key_err(&k, e))?;
        self.s.keys_restored += 1;
        if let Some(d) = self.digester.as_mut() {
            d.add_framed(k, value_at, encoded)
                .map_err(|e| RestoreError::Source(e.to_string()))?;
        }
        Ok(())
    }

    /// A decoded key.
    pub fn key(&mut self, k: Box<KeyEntry>) -> Result<(), RestoreError> {
        if !self.admit(&k, k.loadable(self.now_ms))? {
            return Ok(());
        }
        // `false`: an empty collection, left out as a server drops it on load.
        if self
            .w
            .key(&KeyRecord::from(&*k))
            .map_err(|e| key_err(&k, e))?
        {
            self.s.keys_restored += 1;
            if let Some(d) = self.digester.as_mut() {
                d.add(k).map_err(|e| RestoreError::Source(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The RDB ended and its end mark written; the connection (kept open until the target
    /// is a master again) and what was written.
    fn finish(self, mark: &[u8; 40]) -> Result<(TcpStream, RestoreSummary), RestoreError> {
        let mut s = self.s;
        let (mut stream, bytes) = self
            .w
            .finish()
            .map_err(|e| RestoreError::Source(format!("writing the sync's payload: {e}")))?;
        stream
            .write_all(mark)
            .and_then(|()| stream.flush())
            .map_err(|e| RestoreError::Source(format!("writing the sync's payload: {e}")))?;
        s.bytes_sent = bytes;
        if let Some(d) = self.digester {
            let d = d
                .finish()
                .map_err(|e| RestoreError::Source(e.to_string()))?;
            s.digest_sent = Some(crate::digest::mix::hex(&d.finish()));
        }
        Ok((stream, s))
    }
}

fn key_err(k: &KeyEntry, e: impl std::fmt::Display) -> RestoreError {
    RestoreError::Key {
        db: k.db,
        key: String::from_utf8_lossy(&k.key).into_owned(),
        what: e.to_string(),
    }
}

/// `field:value` of an INFO answer.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// What a target must be before it is pointed at this process: a master, holding no
/// function library unless it is to be flushed (the sync replaces its libraries too).
pub(crate) fn check_target(conn: &mut Conn, opts: &RestoreOptions) -> Result<(), RestoreError> {
    let info = conn.text(&[b"INFO", b"replication"])?;
    if info_field(&info, "role") != Some("master") {
        return Err(RestoreError::Source(format!(
            "{} is a replica (role:{}); --via-sync restores into a master",
            conn.addr(),
            info_field(&info, "role").unwrap_or("?")
        )));
    }
    if !opts.flush {
        if let Ok(Frame::Array(Some(libs))) = conn.call(&[b"FUNCTION", b"LIST"]) {
            if !libs.is_empty() {
                return Err(RestoreError::Source(format!(
                    "{} holds {} function libraries, which a sync replaces: pass --flush to replace them",
                    conn.addr(),
                    libs.len()
                )));
            }
        }
    }
    Ok(())
}

/// The sync's payload side, handed to the feeder: a [`SyncSink`] once the target is a
/// replica of this process and asked for its full sync.
pub(crate) struct Started {
    pub sink: SyncSink,
    mark: [u8; 40],
    offer: Offer,
    pub diskless: bool,
    old_diskless: Option<String>,
}

/// Point the target at this process and answer its handshake; a sink for the payload.
/// On an error the target is made a master again before returning.
pub(crate) fn start(
    conn: &mut Conn,
    target: Target,
    rules: Rules,
    summary: RestoreSummary,
    digester: Option<ParallelDigest>,
    opts: &RestoreOptions,
    now_ms: i64,
) -> Result<Started, RestoreError> {
    let local = conn
        .local_ip()
        .ok_or_else(|| conn.fail("cannot tell this side's address of the connection".into()))?;
    let offer = Offer::open(opts.sync_address.as_deref(), local).map_err(RestoreError::Source)?;
    // The target loads while the payload arrives when its config lets it.
    let old_diskless = match conn.call(&[b"CONFIG", b"GET", b"repl-diskless-load"]) {
        Ok(Frame::Array(Some(kv))) => match kv.get(1) {
            Some(Frame::Bulk(Some(v))) => Some(String::from_utf8_lossy(v).into_owned()),
            _ => None,
        },
        _ => None,
    };
    let diskless = match old_diskless.as_deref() {
        Some("disabled") => conn
            .call(&[b"CONFIG", b"SET", b"repl-diskless-load", b"on-empty-db"])
            .is_ok(),
        Some(_) => true,
        None => false,
    };
    let changed =
        (old_diskless.as_deref() == Some("disabled") && diskless).then(|| "disabled".to_string());
    let port = offer.port.to_string();
    let pointed = conn.text(&[b"REPLICAOF", offer.host.as_bytes(), port.as_bytes()]);
    if let Err(e) = pointed {
        let _ = put_back(conn, changed.as_deref());
        return Err(RestoreError::Source(format!(
            "{e} (managed services such as ElastiCache refuse REPLICAOF: restore without --via-sync)"
        )));
    }
    let begun = offer
        .accept(HANDSHAKE_WAIT)
        .and_then(|mut s| handshake(&mut s).map(|mark| (s, mark)))
        .map_err(RestoreError::Source)
        .and_then(|(s, mark)| {
            s.set_write_timeout(Some(opts.timeout.max(Duration::from_secs(60))))
                .map_err(|e| RestoreError::Source(e.to_string()))?;
            Ok((
                SyncSink::new(s, target, rules, summary, digester, opts, now_ms)?,
                mark,
            ))
        });
    match begun {
        Ok((sink, mark)) => Ok(Started {
            sink,
            mark,
            offer,
            diskless,
            old_diskless: changed,
        }),
        Err(e) => {
            let _ = put_back(conn, changed.as_deref());
            Err(e)
        }
    }
}

/// `REPLICAOF NO ONE`, and `repl-diskless-load` put back when it was changed.
fn put_back(conn: &mut Conn, old_diskless: Option<&str>) -> Result<(), RestoreError> {
    let promoted = conn.text(&[b"REPLICAOF", b"NO", b"ONE"]);
    if let Some(v) = old_diskless {
        conn.text(&[b"CONFIG", b"SET", b"repl-diskless-load", v.as_bytes()])?;
    }
    promoted.map(|_| ()).map_err(RestoreError::from)
}

/// End the payload (`fed`: whether every key was written), wait for the target to load
/// it, make it a master again; what was sent.
pub(crate) fn finish(
    conn: &mut Conn,
    st: Started,
    fed: Result<(), RestoreError>,
) -> Result<RestoreSummary, RestoreError> {
    let Started {
        sink,
        mark,
        offer,
        old_diskless,
        ..
    } = st;
    let loaded = fed
        .and_then(|()| sink.finish(&mark))
        .and_then(|(stream, s)| wait_loaded(conn, &offer).map(|()| (stream, s)));
    let back = put_back(conn, old_diskless.as_deref());
    let (stream, s) = loaded?;
    back?;
    drop(stream);
    Ok(s)
}

/// Until the target says its link to this process is up and it is not loading; an error
/// when it connects again instead (it could not load the payload).
fn wait_loaded(conn: &mut Conn, offer: &Offer) -> Result<(), RestoreError> {
    // Loading a big payload from disk takes the target a while; it answers INFO meanwhile.
    conn.set_read_timeout(Duration::from_secs(600));
    let _ = offer.listener.set_nonblocking(true);
    loop {
        let info = conn.text(&[b"INFO", b"replication"])?;
        if info_field(&info, "master_link_status") == Some("up") {
            let p = conn.text(&[b"INFO", b"persistence"])?;
            if info_field(&p, "loading") == Some("0") {
                return Ok(());
            }
        }
        if offer.reconnected() {
            return Err(RestoreError::Source(format!(
                "{} did not load the payload and asked for another sync (its log says why)",
                conn.addr()
            )));
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read_by_name() {
        let info =
            "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nmaster_link_status_x:down\r\n";
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "master"), None);
    }

    #[test]
    fn offers_listen_where_asked() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let o = Offer::open(None, local).unwrap();
        assert_eq!(o.host, "127.0.0.1");
        assert_ne!(o.port, 0);
        let o = Offer::open(Some("127.0.0.1"), local).unwrap();
        assert_ne!(o.port, 0);
        assert!(Offer::open(Some("127.0.0.1:x"), local).is_err());
        assert!(Offer::open(Some("not-an-ip"), local).is_err());
        let ids: Vec<_> = (0..3).map(|_| hex40()).collect();
        assert!(ids[0].iter().all(u8::is_ascii_hexdigit));
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn a_replica_handshake_gets_a_full_resync_and_an_eof_marked_payload() {
        let o = Offer::open(None, "127.0.0.1".parse().unwrap()).unwrap();
        let port = o.port;
        let replica = std::thread::spawn(move || {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut got = Vec::new();
            for cmd in [
                &["PING"][..],
                &["REPLCONF", "listening-port", "6380"],
                &["REPLCONF", "capa", "eof", "capa", "psync2"],
                &["PSYNC", "?", "-1"],
            ] {
                let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
                let mut b = Vec::new();
                crate::resp::encode_command(&args, &mut b);
                c.write_all(&b).unwrap();
                let mut r = [0u8; 256];
                let n = c.read(&mut r).unwrap();
                got.push(String::from_utf8_lossy(&r[..n]).into_owned());
            }
            got
        });
        let mut s = o.accept(Duration::from_secs(5)).unwrap();
        let mark = handshake(&mut s).unwrap();
        let got = replica.join().unwrap();
        assert_eq!(got[0], "+PONG\r\n");
        assert_eq!(got[1], "+OK\r\n");
        let full = &got[3];
        assert!(full.starts_with("+FULLRESYNC "), "{full}");
        assert!(
            full.ends_with(&format!("0\r\n$EOF:{}\r\n", String::from_utf8_lossy(&mark))),
            "{full}"
        );
    }

    #[test]
    fn a_replica_without_capa_eof_is_refused() {
        let o = Offer::open(None, "127.0.0.1".parse().unwrap()).unwrap();
        let port = o.port;
        let replica = std::thread::spawn(move || {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut b = Vec::new();
            crate::resp::encode_command(&[b"PSYNC", b"?", b"-1"], &mut b);
            c.write_all(&b).unwrap();
            let mut r = Vec::new();
            let _ = c.read_to_end(&mut r);
        });
        let mut s = o.accept(Duration::from_secs(5)).unwrap();
        let e = handshake(&mut s).unwrap_err();
        assert!(e.contains("capa eof"), "{e}");
        drop(s);
        replica.join().unwrap();
    }
}
