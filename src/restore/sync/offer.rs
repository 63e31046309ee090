//! The master's side of one full sync, up to its payload: a listener where the target is
//! told to connect ([`Offer`]), and the answers to its handshake up to `+FULLRESYNC` and
//! the payload's EOF-marked header ([`handshake`]).
//!
//! Owns that exchange only. It must never answer anything but a replica's handshake
//! commands, and never read more of the target than 64 KiB of handshake. A leaf: it
//! imports nothing of its siblings.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::resp::{parse_frame, Frame, Limits, Parsed};

/// How long the target may take to connect and to finish its handshake.
pub const HANDSHAKE_WAIT: Duration = Duration::from_secs(30);

/// The listening side of the sync: where the target is told to connect.
pub struct Offer {
    pub listener: TcpListener,
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
    pub fn accept(&self, wait: Duration) -> Result<TcpStream, String> {
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
    pub fn reconnected(&self) -> bool {
        self.listener.accept().is_ok()
    }
}

/// Answers a replica's handshake (`PING`, `AUTH`, `REPLCONF …`) up to its `PSYNC` or
/// `SYNC`, which gets a full resync; then the payload's EOF-marked header is written.
/// Returns the 40-byte end mark the payload must be followed by.
pub fn handshake(s: &mut TcpStream) -> Result<[u8; 40], String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
