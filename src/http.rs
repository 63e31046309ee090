//! The daemon's HTTP endpoint (SPEC §4): `/metrics`, `/healthz`, `/readyz`, `POST /snapshot`
//! and `GET /snapshot/<id>` (what `replisnap snapshot --wait` polls).
//!
//! Owns the listener, the routes, their status codes and JSON bodies, and the limits on
//! what a client may send. It runs on a thread of its own with a current-thread tokio
//! runtime, so neither a slow client nor a scrape ever touches the replica's thread.
//! The daemon reaches in only through [`Control`] (readiness, snapshot requests) and
//! [`Metrics`]. It must never read a request body, never let a client's input become more
//! than a bounded buffer or a closed route, and never block its runtime: [`Control`]
//! implementations answer from state they already hold.
//!
//! Slow clients: a connection holds one of [`MAX_CONNECTIONS`] slots only once its first
//! bytes arrived (until then it costs a socket and a parked task, at most
//! [`MAX_WAITING`] of them, each for [`HEADER_READ_TIMEOUT`]); with every slot taken, a
//! request whose first bytes are `GET /healthz` or `GET /readyz` still gets one of
//! [`HEALTH_SLOTS`] reserved slots. `POST /snapshot` requires `Authorization: Bearer` when
//! a token is configured, compared in constant time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{oneshot, Semaphore};
use tracing::{debug, info, warn};

use crate::metrics::{self, Metrics};

/// What the HTTP side asks of the daemon. Methods run on a blocking-pool thread, one per
/// request: they may wait briefly (a snapshot request waits for its capture), never for a
/// snapshot to be written.
pub trait Control: Send + Sync {
    /// `Ok` once a full sync has completed and the link is up; otherwise why not, in one
    /// line (it is `/readyz`'s 503 body).
    fn ready(&self) -> Result<(), String>;
    /// Start a snapshot now and return its id, or say why not.
    fn request_snapshot(&self) -> Result<String, SnapshotRequestError>;
    /// Where a snapshot this daemon started stands; `None` for an id it does not know.
    fn snapshot_status(&self, id: &str) -> Option<SnapshotStatus>;
    /// The `/metrics` body when the daemon renders it itself (a cluster's shards each
    /// have a registry); `None`: the registry `serve` was given.
    fn render_metrics(&self) -> Option<String> {
        None
    }
}

/// Why `POST /snapshot` did not start one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotRequestError {
    /// Another snapshot is running (409); its id when known.
    #[error("a snapshot is already running{}", .running.as_deref().map(|id| format!(" ({id})")).unwrap_or_default())]
    Busy { running: Option<String> },
    /// No dataset to snapshot yet, or the link is down (503).
    #[error("not ready: {0}")]
    NotReady(String),
    /// Anything else (500).
    #[error("{0}")]
    Other(String),
}

/// Where a requested snapshot stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotStatus {
    Running,
    /// The RDB and its manifest are stored.
    Stored,
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("http: cannot listen on {addr}: {err}")]
    Bind {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("http: cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("http: cannot start the server thread: {0}")]
    Thread(std::io::Error),
}

/// Connections served at once; more are closed on accept. Scrapers and the CLI need a
/// handful; the cap keeps a flood from costing more than this many buffers.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections accepted that have not sent a byte yet: parked without a buffer.
pub const MAX_WAITING: usize = 512;
/// Extra slots only health checks (`GET /healthz`, `GET /readyz`) may take.
pub const HEALTH_SLOTS: usize = 8;
/// How long a connection that found every slot taken may take to show its request line.
const PEEK_TIMEOUT: Duration = Duration::from_secs(1);
/// A client must send a whole request head within this (slow-loris guard). hyper applies
/// it to idle keep-alive connections too, so scrapers reconnect after 10 s idle.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Request line plus headers; beyond it hyper answers 431 and closes.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// A connection's whole life, keep-alive included: no client holds a slot forever.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Longest snapshot id `GET /snapshot/<id>` looks up; storage ids are 16 to 21 chars.
const MAX_ID_LEN: usize = 64;

/// The running server: its address (port 0 resolved) and the way to stop it.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// The address actually bound (useful after listening on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, drop open connections, and wait for the thread to end.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                warn!("the http thread panicked");
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

struct State {
    metrics: Arc<Metrics>,
    control: Arc<dyn Control>,
    /// SHA-256 of the bearer token `POST /snapshot` requires, when one is set.
    token: Option<[u8; 32]>,
}

/// How the server is run, beyond where it listens.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The bearer token `POST /snapshot` requires (401 without it); `None`: open.
    pub token: Option<String>,
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// Whether an `Authorization` header carries the token. Both sides are hashed first, so
/// the comparison takes the same time whatever the length or the first wrong byte.
fn authorized(header: Option<&HeaderValue>, token: &[u8; 32]) -> bool {
    let given = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let h = sha256(given.trim().as_bytes());
    let diff = h.iter().zip(token).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    diff == 0 && !given.is_empty()
}

/// Bind `listen` now (so a taken port is an error here, not later in a log) and serve on
/// a thread named `http` until [`HttpServer::shutdown`] or drop.
pub fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    control: Arc<dyn Control>,
) -> Result<HttpServer, HttpError> {
    serve_with(listen, metrics, control, Options::default())
}

/// [`serve`] with [`Options`] (the bearer token for `POST /snapshot`).
pub fn serve_with(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    control: Arc<dyn Control>,
    options: Options,
) -> Result<HttpServer, HttpError> {
    let bind = |err| HttpError::Bind { addr: listen, err };
    let std_listener = std::net::TcpListener::bind(listen).map_err(bind)?;
    std_listener.set_nonblocking(true).map_err(bind)?;
    let addr = std_listener.local_addr().map_err(bind)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(HttpError::Runtime)?;
    let listener = {
        // Registering with the reactor needs the runtime's context.
        let _ctx = rt.enter();
        tokio::net::TcpListener::from_std(std_listener).map_err(bind)?
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let token = options.token.as_deref().map(|t| sha256(t.as_bytes()));
    if token.is_none() && !addr.ip().is_loopback() {
        warn!(
            listen = %addr,
            "http: listening beyond loopback with no token: anyone who reaches this port \
             can request snapshots (set [http] token_file or $REPLISNAP_HTTP_TOKEN)"
        );
    }
    let state = Arc::new(State {
        metrics,
        control,
        token,
    });
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            rt.block_on(async move {
                let accept = tokio::spawn(accept_loop(listener, state));
                // Sender dropped or signalled: either way, stop.
                let _ = stop_rx.await;
                accept.abort();
            });
            // Connections still open are dropped with the runtime.
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(HttpError::Thread)?;
    info!(listen = %addr, "http: serving /metrics /healthz /readyz /snapshot");
    Ok(HttpServer {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

const HEALTH_LINES: [&[u8]; 4] = [
    b"GET /healthz ",
    b"GET /readyz ",
    b"HEAD /healthz ",
    b"HEAD /readyz ",
];

/// Whether a request's first bytes are a health check's request line: `Some(true)` yes,
/// `Some(false)` no, `None` cannot tell yet.
fn health_check(start: &[u8]) -> Option<bool> {
    if HEALTH_LINES.iter().any(|p| start.starts_with(p)) {
        Some(true)
    } else if HEALTH_LINES.iter().any(|p| p.starts_with(start)) {
        None
    } else {
        Some(false)
    }
}

/// Wait (parked, no buffer) for the connection's first bytes, then take a slot: a general
/// one, else a health slot for a health check. `None`: close it.
async fn admit(
    stream: &tokio::net::TcpStream,
    slots: &Arc<Semaphore>,
    health: &Arc<Semaphore>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let mut probe = [0u8; 16];
    match tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut probe[..1])).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return None,
    }
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    // Every slot taken: only a health check gets in, once its request line shows.
    let deadline = tokio::time::Instant::now() + PEEK_TIMEOUT;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut probe)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        match health_check(&probe[..n]) {
            Some(true) => return health.clone().try_acquire_owned().ok(),
            Some(false) => return None,
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<State>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let health = Arc::new(Semaphore::new(HEALTH_SLOTS));
    let waiting = Arc::new(Semaphore::new(MAX_WAITING));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(64)
        .max_buf_size(MAX_HEADER_BYTES * 2);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: back off rather than spin.
                warn!(error = %e, "http: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(parked) = waiting.clone().try_acquire_owned() else {
            debug!(%peer, "http: too many connections, closing");
            continue;
        };
        let st = state.clone();
        let (slots, health, http) = (slots.clone(), health.clone(), http.clone());
        tokio::spawn(async move {
            let admitted = admit(&stream, &slots, &health).await;
            drop(parked);
            let Some(slot) = admitted else {
                debug!(%peer, "http: nothing sent in time or no slot free, closing");
                return;
            };
            serve_one(&http, stream, peer, st, slot).await;
        });
    }
}

async fn serve_one(
    http: &hyper::server::conn::http1::Builder,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    st: Arc<State>,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    {
        let conn = http.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |req| {
                let st = st.clone();
                // Off the runtime thread: a snapshot request waits for the capture (up to
                // the snapshotter's bound while the replica is busy, e.g. in a full sync),
                // and that must not stall /metrics or /healthz on other connections.
                async move {
                    let resp = tokio::task::spawn_blocking(move || handle(&req, &st))
                        .await
                        .unwrap_or_else(|_| {
                            respond(StatusCode::INTERNAL_SERVER_ERROR, TEXT, "internal error\n")
                        });
                    Ok::<_, Infallible>(resp)
                }
            }),
        );
        match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(%peer, error = %e, "http: connection error"),
            Err(_) => debug!(%peer, "http: connection lifetime reached, closing"),
        }
        drop(slot);
    }
}

type Resp = Response<Full<Bytes>>;

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, v: serde_json::Value) -> Resp {
    let mut r = respond(status, JSON, format!("{v}\n"));
    // Status answers change from one poll to the next.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json_error(status: StatusCode, msg: &str) -> Resp {
    json(status, serde_json::json!({ "error": msg }))
}

fn not_allowed(allow: &'static str) -> Resp {
    let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// One line, whatever the daemon's reason holds.
fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_get(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

/// Ids are looked up only if they could be ids: short, and plain characters.
fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn handle(req: &Request<Incoming>, st: &State) -> Resp {
    let method = req.method();
    let path = req.uri().path();
    let resp = match (path, &st.token) {
        ("/snapshot", Some(token))
            if method == Method::POST
                && !authorized(req.headers().get(header::AUTHORIZATION), token) =>
        {
            let mut r = json_error(StatusCode::UNAUTHORIZED, "a bearer token is required");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
        _ => route(method, path, st),
    };
    debug!(%method, path = ?path, status = resp.status().as_u16(), "http request");
    resp
}

fn route(method: &Method, path: &str, st: &State) -> Resp {
    match path {
        "/metrics" if is_get(method) => {
            let body = st
                .control
                .render_metrics()
                .unwrap_or_else(|| st.metrics.render());
            respond(StatusCode::OK, metrics::CONTENT_TYPE, body)
        }
        "/healthz" if is_get(method) => respond(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" if is_get(method) => match st.control.ready() {
            Ok(()) => respond(StatusCode::OK, TEXT, "ready\n"),
            Err(why) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("{}\n", one_line(&why)),
            ),
        },
        "/metrics" | "/healthz" | "/readyz" => not_allowed("GET, HEAD"),
        "/snapshot" if method == Method::POST => post_snapshot(st),
        "/snapshot" => not_allowed("POST"),
        _ => match path.strip_prefix("/snapshot/") {
            Some(id) if is_get(method) => snapshot_status(id, st),
            Some(_) => not_allowed("GET, HEAD"),
            None => respond(StatusCode::NOT_FOUND, TEXT, "not found\n"),
        },
    }
}

fn post_snapshot(st: &State) -> Resp {
    match st.control.request_snapshot() {
        Ok(id) => {
            info!(id = %id, "http: snapshot requested");
            json(StatusCode::ACCEPTED, serde_json::json!({ "id": id }))
        }
        Err(e) => {
            let msg = one_line(&e.to_string());
            match e {
                SnapshotRequestError::Busy { running } => json(
                    StatusCode::CONFLICT,
                    serde_json::json!({ "error": msg, "running": running }),
                ),
                SnapshotRequestError::NotReady(_) => {
                    json_error(StatusCode::SERVICE_UNAVAILABLE, &msg)
                }
                SnapshotRequestError::Other(_) => {
                    warn!(error = %msg, "http: snapshot request failed");
                    json_error(StatusCode::INTERNAL_SERVER_ERROR, &msg)
                }
            }
        }
    }
}

fn snapshot_status(id: &str, st: &State) -> Resp {
    let status = plausible_id(id)
        .then(|| st.control.snapshot_status(id))
        .flatten();
    let v = match status {
        None => return json_error(StatusCode::NOT_FOUND, "unknown snapshot id"),
        Some(SnapshotStatus::Running) => serde_json::json!({ "id": id, "status": "running" }),
        Some(SnapshotStatus::Stored) => serde_json::json!({ "id": id, "status": "stored" }),
        Some(SnapshotStatus::Failed(reason)) => {
            serde_json::json!({ "id": id, "status": "failed", "reason": one_line(&reason) })
        }
    };
    json(StatusCode::OK, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_looked_up_only_when_plausible() {
        assert!(plausible_id("20250101T000000Z"));
        assert!(plausible_id("20250101T000000Z-12"));
        assert!(!plausible_id(""));
        assert!(!plausible_id("../etc/passwd"));
        assert!(!plausible_id("a%2Fb"));
        assert!(!plausible_id(&"a".repeat(65)));
    }

    #[test]
    fn reasons_become_one_line() {
        assert_eq!(one_line("a\r\nb\n\nc"), "a b c");
        assert_eq!(
            SnapshotRequestError::Busy {
                running: Some("X".into())
            }
            .to_string(),
            "a snapshot is already running (X)"
        );
    }
}
