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
}

/// Bind `listen` now (so a taken port is an error here, not later in a log) and serve on
/// a thread named `http` until [`HttpServer::shutdown`] or drop.
pub fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    control: Arc<dyn Control>,
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
    let state = Arc::new(State { metrics, control });
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

async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<State>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "http: too many connections, closing");
            continue;
        };
        let st = state.clone();
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
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, error = %e, "http: connection error"),
                Err(_) => debug!(%peer, "http: connection lifetime reached, closing"),
            }
            drop(slot);
        });
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
    let resp = route(method, path, st);
    debug!(%method, path = ?path, status = resp.status().as_u16(), "http request");
    resp
}

fn route(method: &Method, path: &str, st: &State) -> Resp {
    match path {
        "/metrics" if is_get(method) => {
            respond(StatusCode::OK, metrics::CONTENT_TYPE, st.metrics.render())
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
