//! The test double for the daemon's side of the HTTP endpoint, raw HTTP requests, and a
//! check that a page is Prometheus text exposition.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use replisnap::http::{serve, Control, HttpServer, SnapshotRequestError, SnapshotStatus};
use replisnap::metrics::Metrics;

/// A daemon stand-in: readiness, what POST /snapshot answers next, and per id the statuses
/// successive polls see (the last one repeats).
#[derive(Default)]
pub struct Fake {
    pub ready: Mutex<Option<String>>,
    requests: Mutex<VecDeque<Result<String, SnapshotRequestError>>>,
    statuses: Mutex<HashMap<String, VecDeque<SnapshotStatus>>>,
    pub status_calls: Mutex<Vec<String>>,
}

impl Fake {
    pub fn ready() -> Arc<Fake> {
        Arc::new(Fake::default())
    }

    /// The next POST /snapshot starts `id`, whose polls then see `script`.
    pub fn will_start(&self, id: &str, script: &[SnapshotStatus]) {
        self.requests.lock().unwrap().push_back(Ok(id.into()));
        self.statuses
            .lock()
            .unwrap()
            .insert(id.into(), script.iter().cloned().collect());
    }

    pub fn will_refuse(&self, e: SnapshotRequestError) {
        self.requests.lock().unwrap().push_back(Err(e));
    }
}

impl Control for Fake {
    fn ready(&self) -> Result<(), String> {
        match &*self.ready.lock().unwrap() {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }

    fn request_snapshot(&self) -> Result<String, SnapshotRequestError> {
        self.requests
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Err(SnapshotRequestError::Other("no script".into())))
    }

    fn snapshot_status(&self, id: &str) -> Option<SnapshotStatus> {
        self.status_calls.lock().unwrap().push(id.into());
        let mut all = self.statuses.lock().unwrap();
        let q = all.get_mut(id)?;
        if q.len() > 1 {
            q.pop_front()
        } else {
            q.front().cloned()
        }
    }
}

pub fn start(fake: &Arc<Fake>) -> (HttpServer, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new().unwrap());
    let control: Arc<dyn Control> = fake.clone();
    let server = serve("127.0.0.1:0".parse().unwrap(), metrics.clone(), control).unwrap();
    (server, metrics)
}

pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// Send raw bytes, read until the server closes, split the reply.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

pub fn req(addr: SocketAddr, method: &str, path: &str) -> Reply {
    raw(
        addr,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}
/// Every sample line is `name{labels} value` with a number, every family has HELP and
/// TYPE: what a Prometheus scraper needs to accept the page.
pub fn assert_exposition_parses(text: &str) {
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap();
            let kind = it.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "{line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "no TYPE before {line}");
    }
}

pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}
