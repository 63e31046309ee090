//! `replisnap snapshot --config F [--wait] [--timeout D]`: ask the running daemon for a
//! snapshot over its HTTP endpoint (`POST /snapshot`), print the id; with `--wait`, poll
//! `GET /snapshot/<id>` until it is stored (print the id) or failed (exit 1, the reason).
//!
//! Owns the client side of that exchange: a minimal HTTP/1.1 client over a std
//! `TcpStream` (one request per connection, `Connection: close`), since it only ever
//! talks to our own server. It must never hang (every connect and read has a timeout, and
//! `--wait` a deadline) and never trust the reply: sizes are capped, the id is checked
//! before it goes into a URL.

use std::io::{IsTerminal, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;

use crate::config::Config;

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// The daemon's configuration file (its [http] listen address is where to ask).
    #[arg(long, value_name = "F", env = "REPLISNAP_CONFIG", default_value = super::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Wait until the snapshot is stored, then print its id (exit 1 if it fails).
    #[arg(long)]
    pub wait: bool,
    /// With --wait, give up after this long: 500ms, 90s, 10m, 1h (a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// How often `--wait` asks.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// `--wait` rides out a daemon that is briefly unreachable (a restart of its HTTP side,
/// a full accept queue) for this long before giving up.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Our server's replies are a few hundred bytes; anything near this is not our server.
const MAX_REPLY: u64 = 64 * 1024;

pub fn run(a: SnapshotArgs) -> Result<ExitCode> {
    let cfg = Config::load(&a.config)?;
    let token = cfg
        .http_token()
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.config.display()))?;
    let addr = connect_addr(cfg.http.listen);
    let reply =
        request_with(addr, "POST", "/snapshot", token.as_deref()).map_err(|e| e.at(addr))?;
    let doc = reply.json();
    let field = |k: &str| doc.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let id =
        match reply.status {
            202 => match field("id") {
                Some(id) if id_ok(&id) => id,
                _ => bail!(
                    "the daemon at {addr} answered 202 without a usable id: {}",
                    reply.excerpt()
                ),
            },
            401 => bail!(
            "the daemon at {addr} wants a bearer token{}: set [http] token_file or ${} as it has",
            if token.is_some() { " (ours was refused)" } else { "" },
            crate::config::HTTP_TOKEN_ENV
        ),
            409 => bail!(
                "{} (daemon at {addr})",
                field("error").unwrap_or_else(|| "a snapshot is already running".into())
            ),
            503 => bail!(
                "the daemon at {addr} cannot snapshot now: {}",
                field("error").unwrap_or_else(|| reply.excerpt())
            ),
            s => bail!(
                "the daemon at {addr} answered {s}: {}",
                field("error").unwrap_or_else(|| reply.excerpt())
            ),
        };
    tracing::debug!(id = %id, %addr, "snapshot requested");
    if !a.wait {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    wait_for(addr, &id, a.timeout)?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// Poll until stored (Ok), failed or unknown (Err), or the deadline.
fn wait_for(addr: SocketAddr, id: &str, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut spinner = Spinner::new(id);
    let mut unreachable_since: Option<Instant> = None;
    let path = format!("/snapshot/{id}");
    loop {
        match request(addr, "GET", &path) {
            Ok(reply) => {
                unreachable_since = None;
                let doc = reply.json();
                let field = |k: &str| doc.get(k).and_then(|v| v.as_str()).map(str::to_string);
                match (reply.status, field("status").as_deref()) {
                    (200, Some("stored")) => {
                        spinner.finish();
                        return Ok(());
                    }
                    (200, Some("failed")) => {
                        spinner.finish();
                        let why = field("reason").unwrap_or_else(|| "no reason given".into());
                        bail!("snapshot {id} failed: {why}");
                    }
                    (200, Some("running")) => {}
                    (404, _) => {
                        spinner.finish();
                        bail!("snapshot {id}: the daemon at {addr} does not know it (restarted?)");
                    }
                    (s, _) => {
                        spinner.finish();
                        bail!(
                            "snapshot {id}: the daemon at {addr} answered {s}: {}",
                            reply.excerpt()
                        );
                    }
                }
            }
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= UNREACHABLE_GRACE {
                    spinner.finish();
                    return Err(e.at(addr));
                }
                tracing::debug!(error = %e, "daemon unreachable, retrying");
            }
        }
        let now = Instant::now();
        if now >= deadline {
            spinner.finish();
            bail!(
                "snapshot {id} not stored after {} (still running in the daemon)",
                show_duration(timeout)
            );
        }
        spinner.tick(started.elapsed());
        std::thread::sleep(POLL_EVERY.min(deadline - now));
    }
}

/// The address to connect to: a daemon listening on every address (0.0.0.0 or ::) is
/// reached on loopback.
pub fn connect_addr(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// An id we are willing to put in a URL path (the server checks the same way).
fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("not an HTTP reply: {0}")]
    Malformed(&'static str),
}

impl ClientError {
    /// The one-line error the user sees.
    fn at(self, addr: SocketAddr) -> anyhow::Error {
        match self {
            ClientError::Connect(e) => {
                anyhow::anyhow!(
                    "cannot reach the daemon at {addr}: {e} (is `replisnap run` running with this [http] listen?)"
                )
            }
            e => anyhow::anyhow!("the daemon at {addr}: {e}"),
        }
    }
}

/// A reply: status code and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body's start, on one line, for messages.
    fn excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        match line.char_indices().nth(200) {
            Some((i, _)) => format!("{}…", &line[..i]),
            None if line.is_empty() => "(empty body)".into(),
            None => line,
        }
    }
}

/// One request on a fresh connection, read until the server closes it.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Result<Reply, ClientError> {
    request_with(addr, method, path, None)
}

/// [`request`] with `Authorization: Bearer <token>` when a token is given.
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<Reply, ClientError> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(ClientError::Connect)?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(ClientError::Io)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: replisnap/{}\r\n\
         Accept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n{}\r\n",
        env!("CARGO_PKG_VERSION"),
        token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default()
    );
    s.write_all(head.as_bytes()).map_err(ClientError::Io)?;
    let mut raw = Vec::new();
    s.take(MAX_REPLY + 1)
        .read_to_end(&mut raw)
        .map_err(ClientError::Io)?;
    if raw.len() as u64 > MAX_REPLY {
        return Err(ClientError::Malformed("reply too large"));
    }
    parse_reply(&raw)
}

/// Parse a whole HTTP/1.x reply read to EOF.
pub fn parse_reply(raw: &[u8]) -> Result<Reply, ClientError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ClientError::Malformed("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| ClientError::Malformed("headers"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(ClientError::Malformed("status line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ClientError::Malformed("status line"));
    }
    let status: u16 = code
        .parse()
        .ok()
        .filter(|c| (100..600).contains(c))
        .ok_or(ClientError::Malformed("status code"))?;
    let (mut length, mut chunked) = (None, false);
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            return Err(ClientError::Malformed("header line"));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(
                v.parse::<usize>()
                    .map_err(|_| ClientError::Malformed("content-length"))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or(ClientError::Malformed("body shorter than content-length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Reply { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(ClientError::Malformed("chunk size line"))?;
        let size_text =
            std::str::from_utf8(&rest[..eol]).map_err(|_| ClientError::Malformed("chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ClientError::Malformed("chunk size"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..size)
            .ok_or(ClientError::Malformed("chunk size"))?;
        out.extend_from_slice(chunk);
        rest = rest
            .get(size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or(ClientError::Malformed("chunk end"))?;
    }
}

/// `500ms`, `90s`, `10m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 90s, 10m or 1h"))?;
    let per = match unit {
        "ms" => Duration::from_millis(1),
        "" | "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    per.checked_mul(u32::try_from(n).map_err(|_| format!("{s:?}: too long"))?)
        .ok_or_else(|| format!("{s:?}: too long"))
}

fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// A spinner on stderr while `--wait` waits, on a terminal only and only after a second
/// (SPEC §1: long work shows progress on a TTY only).
struct Spinner {
    label: String,
    enabled: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Spinner {
    fn new(id: &str) -> Spinner {
        Spinner {
            label: format!("snapshot {id} running"),
            enabled: std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    fn tick(&mut self, elapsed: Duration) {
        if !self.enabled || elapsed < Duration::from_secs(1) {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            {
                b.set_style(style);
            }
            b.set_message(self.label.clone());
            b
        });
        bar.tick();
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_refuse() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        for bad in ["", "h", "1d", "-1s", "1.5h", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(show_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(show_duration(Duration::from_millis(300)), "300ms");
    }

    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        let a: SocketAddr = "0.0.0.0:9187".parse().unwrap();
        assert_eq!(connect_addr(a), "127.0.0.1:9187".parse().unwrap());
        let a: SocketAddr = "[::]:9187".parse().unwrap();
        assert_eq!(connect_addr(a), "[::1]:9187".parse().unwrap());
        let a: SocketAddr = "10.1.2.3:9187".parse().unwrap();
        assert_eq!(connect_addr(a), a);
    }

    #[test]
    fn replies_parse_with_length_chunks_or_eof() {
        let r = parse_reply(b"HTTP/1.1 202 Accepted\r\ncontent-length: 9\r\n\r\n{\"id\":1}\nEXTRA")
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (202, &b"{\"id\":1}\n"[..]));
        let r = parse_reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, b"abcde");
        let r = parse_reply(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"nope"[..]));
        for bad in [
            &b"garbage"[..],
            b"SMTP 200 x\r\n\r\n",
            b"HTTP/1.1 abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffff\r\nab",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            assert!(
                parse_reply(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
