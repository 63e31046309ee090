//! A real S3-protocol server for tests: SeaweedFS (`weed mini`), one per test binary.
//!
//! The binary is what `scripts/install-test-servers.sh` installs
//! (`$REPLISNAP_TEST_SERVERS/seaweedfs/weed`), or `$REPLISNAP_WEED`. Under CI (`CI` set) a
//! missing binary or a server that does not come up fails the test; elsewhere the test is
//! skipped with a message. Every port is picked free on 127.0.0.1 and telemetry is off.
//! The server runs under a small shell watchdog that stops it (and removes its data) once
//! the test process is gone, so no server outlives its tests.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::Credentials;
use replisnap::config::{Storage as StorageConfig, StorageKind};
use replisnap::storage::s3::S3Storage;

pub const ACCESS_KEY: &str = "replisnapak";
pub const SECRET_KEY: &str = "replisnapsecretkey0123456789";
/// The KMS key SeaweedFS's built-in local KMS answers to.
pub const KMS_KEY: &str = "alias/seaweedfs-default";

const S3_JSON: &str = r#"{"identities":[{"name":"admin","credentials":[{"accessKey":"replisnapak","secretKey":"replisnapsecretkey0123456789"}],
  "actions":["Admin","Read","List","Tagging","Write"]}],
 "kms":{"default_provider":"local","providers":{"local":{"type":"local"}}}}"#;

pub struct Seaweed {
    pub endpoint: String,
    pub dir: PathBuf,
    pub log: PathBuf,
}

fn weed_path() -> PathBuf {
    if let Some(p) = std::env::var_os("REPLISNAP_WEED").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let servers = match std::env::var_os("REPLISNAP_TEST_SERVERS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-servers"),
    };
    servers.join("seaweedfs/weed")
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held together so no two are the same, released just before the server binds them.
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

static SERVER: OnceLock<Option<Seaweed>> = OnceLock::new();

/// The shared server, started on first use; None (test skipped) only outside CI.
pub fn server() -> Option<&'static Seaweed> {
    SERVER.get_or_init(start).as_ref()
}

fn start() -> Option<Seaweed> {
    let weed = weed_path();
    if !weed.is_file() {
        let msg = format!(
            "SeaweedFS not found at {} (run scripts/install-test-servers.sh or set REPLISNAP_WEED)",
            weed.display()
        );
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("skipped: {msg}");
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("replisnap-seaweed-")
        .tempdir()
        .expect("temp dir")
        .keep();
    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    std::fs::write(dir.join("s3.json"), S3_JSON).expect("s3.json");
    let p = free_ports(11);
    let args = format!(
        "mini -dir={d}/data -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port={} -s3.port.grpc={} \
         -master.port={} -master.port.grpc={} -volume.port={} -volume.port.grpc={} \
         -filer.port={} -filer.port.grpc={} -admin.port={} -admin.port.grpc={} \
         -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
         -master.telemetry=false -s3.config={d}/s3.json",
        p[0],
        p[1],
        p[2],
        p[3],
        p[4],
        p[5],
        p[6],
        p[7],
        p[8],
        p[9],
        d = dir.display()
    );
    let log = dir.join("weed.log");
    // The watchdog: weed in the background; once the test process ($1) is gone, stop it
    // (SIGTERM, then SIGKILL) and remove the data.
    let script = r#"
        "$2" $3 >"$4" 2>&1 &
        w=$!
        while kill -0 "$1" 2>/dev/null && kill -0 "$w" 2>/dev/null; do sleep 0.5; done
        kill -TERM "$w" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$w" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$w" 2>/dev/null
        wait "$w" 2>/dev/null
        rm -rf "$5" "/tmp/seaweedfs-s3-$6.sock"
    "#;
    // Not waited for on purpose: it outlives the tests, and reaps weed itself.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(&weed)
        .arg(&args)
        .arg(&log)
        .arg(&dir)
        // weed leaves a socket named after its S3 port in /tmp.
        .arg(p[0].to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the SeaweedFS watchdog");
    let sw = Seaweed {
        endpoint: format!("http://127.0.0.1:{}", p[0]),
        dir,
        log,
    };
    // Ready once a bucket can be created and an object written (retried: the first
    // requests fail while the filer and volume server come up).
    let s = sw.storage_in("replisnap-ready", "", |_| {});
    let started = Instant::now();
    loop {
        let bucket = s.client().create_bucket().bucket("replisnap-ready").send();
        let put = s
            .client()
            .put_object()
            .bucket("replisnap-ready")
            .key("probe")
            .body(b"ok".to_vec().into())
            .send();
        let ok = s.block_on(async {
            let _ = bucket.await;
            put.await.is_ok()
        });
        if ok {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            panic!(
                "SeaweedFS did not accept a PUT within 60 s; log:\n{}",
                std::fs::read_to_string(&sw.log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Some(sw)
}

static BUCKETS: AtomicU32 = AtomicU32::new(0);

/// The `[storage]` of kind s3 for the server at `endpoint`, `bucket` and `prefix`.
pub fn config_for(endpoint: &str, bucket: &str, prefix: &str) -> StorageConfig {
    StorageConfig {
        kind: StorageKind::S3,
        path: None,
        bucket: Some(bucket.into()),
        prefix: prefix.into(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.into()),
        force_path_style: true,
        sse: None,
        kms_key_id: None,
        storage_class: None,
        part_size: None,
        upload_concurrency: None,
        checksum: None,
        request_checksum_calculation: None,
        response_checksum_validation: None,
        max_attempts: None,
        lease_seconds: None,
        lease_wait_seconds: None,
        read_timeout_seconds: None,
        staging: Default::default(),
    }
}

impl Seaweed {
    /// The `[storage]` of kind s3 for this server, `bucket` and `prefix`.
    pub fn config(&self, bucket: &str, prefix: &str) -> StorageConfig {
        config_for(&self.endpoint, bucket, prefix)
    }

    pub fn credentials() -> Credentials {
        Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "replisnap-tests")
    }

    /// A storage on `bucket`/`prefix`, its config adjusted by `edit`.
    pub fn storage_in(
        &self,
        bucket: &str,
        prefix: &str,
        edit: impl FnOnce(&mut StorageConfig),
    ) -> S3Storage {
        let mut cfg = self.config(bucket, prefix);
        edit(&mut cfg);
        S3Storage::open(&cfg, Some(Self::credentials())).expect("open S3 storage")
    }

    /// A fresh bucket of its own for one test.
    pub fn new_bucket(&self, what: &str) -> String {
        let n = BUCKETS.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}-{n}-{what}", std::process::id());
        let s = self.storage_in(&name, "", |_| {});
        s.block_on(s.client().create_bucket().bucket(&name).send())
            .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
        name
    }
}
