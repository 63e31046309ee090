//! A TCP proxy the test controls: where it forwards new connections (`upstream`), whether
//! they wait (`hold`), and cutting every open connection (`cut`) — a failover or a network
//! partition without touching the servers.
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
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

pub fn proxy(upstream: String) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let upstream = Arc::new(Mutex::new(upstream));
    let hold = Arc::new(AtomicBool::new(false));
    let open = Arc::new(Mutex::new(Vec::new()));
    let (up, h, o) = (upstream.clone(), hold.clone(), open.clone());
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
            std::thread::spawn(move || pipe(client, server));
            std::thread::spawn(move || pipe(s2, c2));
        }
    });
    Proxy {
        addr,
        upstream,
        hold,
        open,
    }
}

impl Proxy {
    /// Close every connection made so far (new ones go to `upstream`).
    pub fn cut(&self) {
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}
