//! A TCP proxy the test controls: where it forwards new connections (`upstream`), whether
//! they wait (`hold`), cutting every open connection (`cut`) — a failover or a network
//! partition without touching the servers — and bytes added to what the server sends
//! (`inject`), as a managed master's own additions to its replication stream.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
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
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let upstream = Arc::new(Mutex::new(upstream));
    let hold = Arc::new(AtomicBool::new(false));
    let open = Arc::new(Mutex::new(Vec::new()));
    let to_clients = Arc::new(Mutex::new(Vec::new()));
    let (up, h, o, tc) = (
        upstream.clone(),
        hold.clone(),
        open.clone(),
        to_clients.clone(),
    );
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
            std::thread::spawn(move || pipe(s2, c2));
        }
    });
    Proxy {
        addr,
        upstream,
        hold,
        open,
        to_clients,
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
