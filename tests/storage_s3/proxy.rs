//! A fault-injecting HTTP/1.1 proxy between the S3 client and SeaweedFS.
//!
//! Each client connection gets its own upstream connection; requests are read head and
//! body (`Content-Length` framing, as the SDK sends in-memory bodies) and either forwarded
//! or answered with a fault: an S3 error status, the connection closed half-way through
//! the body, no answer at all (a stall), or the request done and its answer lost. Responses are copied back byte for byte. Every
//! request seen is logged (method, path and query) so tests can count retries.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and S3 error code (the request body is read first).
    Status(u16, &'static str),
    /// Read half of the body, then close the connection.
    CloseMidBody,
    /// Read the whole request and never answer (until the client gives up).
    Stall,
    /// Forward the request (on a connection of its own), let the server act on it, then
    /// close the client's connection: the request took effect, its answer is lost.
    LoseAnswer,
}

/// Inject `fault` into the next `times` requests with `method` whose path-and-query
/// contains every string of `contains`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: &'static str,
    pub contains: Vec<String>,
    pub times: usize,
    pub fault: Fault,
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    log: Vec<String>,
    injected: Vec<String>,
}

pub struct Proxy {
    pub endpoint: String,
    shared: Arc<Mutex<Shared>>,
}

impl Proxy {
    /// Listen on a free port of 127.0.0.1, forwarding to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let endpoint = format!("http://{}", l.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let s = shared.clone();
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(client) = conn else { continue };
                let (s, upstream) = (s.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, &upstream, &s);
                });
            }
        });
        Proxy { endpoint, shared }
    }

    pub fn add(&self, rule: Rule) {
        self.shared.lock().unwrap().rules.push(rule);
    }

    /// Drop every rule not used up.
    pub fn clear(&self) {
        self.shared.lock().unwrap().rules.clear();
    }

    /// Requests seen ("METHOD path?query"), and taken with them.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.lock().unwrap().log)
    }

    /// Faults injected ("FAULT METHOD path?query").
    pub fn take_injected(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.lock().unwrap().injected)
    }
}

fn serve(client: TcpStream, upstream: &str, shared: &Mutex<Shared>) -> std::io::Result<()> {
    let up = TcpStream::connect(upstream)?;
    // Answers flow back untouched.
    let (mut up_r, mut client_w) = (up.try_clone()?, client.try_clone()?);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut client_w);
        let _ = client_w.shutdown(Shutdown::Write);
    });
    let mut up_w = up;
    let mut client_w = client.try_clone()?;
    let mut r = BufReader::new(client);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line)? == 0 {
                let _ = up_w.shutdown(Shutdown::Write);
                return Ok(());
            }
            let end = line == b"\r\n";
            head.extend_from_slice(&line);
            if end {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut first = text.split_whitespace();
        let method = first.next().unwrap_or("").to_string();
        let target = first.next().unwrap_or("").to_string();
        let len: usize = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let seen = format!("{method} {target}");
        let fault = {
            let mut sh = shared.lock().unwrap();
            sh.log.push(seen.clone());
            let hit = sh.rules.iter_mut().find(|rule| {
                rule.times > 0
                    && rule.method == method
                    && rule.contains.iter().all(|c| target.contains(c.as_str()))
            });
            let fault = hit.map(|rule| {
                rule.times -= 1;
                rule.fault.clone()
            });
            if let Some(f) = &fault {
                sh.injected.push(format!("{f:?} {seen}"));
            }
            fault
        };
        match fault {
            None => {
                up_w.write_all(&head)?;
                std::io::copy(&mut (&mut r).take(len as u64), &mut up_w)?;
            }
            Some(Fault::Status(code, s3code)) => {
                std::io::copy(&mut (&mut r).take(len as u64), &mut std::io::sink())?;
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{s3code}</Code>\
                     <Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>"
                );
                write!(
                    client_w,
                    "HTTP/1.1 {code} Injected\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )?;
            }
            Some(Fault::CloseMidBody) => {
                std::io::copy(&mut (&mut r).take(len as u64 / 2), &mut std::io::sink())?;
                let _ = client_w.shutdown(Shutdown::Both);
                let _ = up_w.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some(Fault::LoseAnswer) => {
                let mut body = vec![0u8; len];
                r.read_exact(&mut body)?;
                let mut side = TcpStream::connect(upstream)?;
                side.write_all(&head)?;
                side.write_all(&body)?;
                // The answer's first bytes mean the server has acted.
                let mut first = [0u8; 1];
                side.set_read_timeout(Some(Duration::from_secs(30)))?;
                let _ = side.read(&mut first);
                let _ = client_w.shutdown(Shutdown::Both);
                let _ = up_w.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some(Fault::Stall) => {
                std::io::copy(&mut (&mut r).take(len as u64), &mut std::io::sink())?;
                // Hold the connection open and silent until the client drops it.
                let mut buf = [0u8; 1];
                let _ = r.get_mut().set_read_timeout(Some(Duration::from_secs(120)));
                let _ = r.read(&mut buf);
                let _ = up_w.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
    }
}
