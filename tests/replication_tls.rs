//! The link over TLS (rustls) to a real TLS-enabled redis-server 7.0: certificates from a
//! test CA made with the openssl CLI; verification on, a client certificate, a wrong CA
//! refused, and `insecure_skip_verify` doing what it says.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use replisnap::keyspace::digest_snapshot;
use replisnap::replication::tls::TlsSettings;
use replisnap::replication::{Replica, ReplicaHandle, Settings};
use support::pki::make_pki;
use support::TestServer;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn replica(addr: String, tls: TlsSettings) -> (ReplicaHandle, std::thread::JoinHandle<()>) {
    let (r, h) = Replica::new(Settings {
        address: addr,
        username: None,
        password: None,
        announce_port: 6392,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: Some(tls),
    });
    (h, std::thread::spawn(move || r.run()))
}

fn wait(f: impl FnMut() -> bool, secs: u64) -> bool {
    support::wait_until(Duration::from_secs(secs), f)
}

#[test]
fn full_sync_over_tls_with_verification_and_client_certificate() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path();
    make_pki(d, "ca");
    let other = tempfile::tempdir().unwrap();
    make_pki(other.path(), "otherca");
    let tls_port = free_port();
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    let m = TestServer::start(
        &bin,
        &[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &p("server.crt"),
            "--tls-key-file",
            &p("server.key"),
            "--tls-ca-cert-file",
            &p("ca.crt"),
            "--tls-auth-clients",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ],
    )
    .expect("TLS master");
    for i in 0..200 {
        m.must(&["SET", &format!("k{i}"), "v"]);
    }
    let addr = format!("127.0.0.1:{tls_port}");
    let good = TlsSettings {
        ca_file: Some(d.join("ca.crt")),
        cert_file: Some(d.join("client.crt")),
        key_file: Some(d.join("client.key")),
        server_name: None,
        insecure_skip_verify: false,
    };

    let (h, t) = replica(addr.clone(), good.clone());
    assert!(
        wait(|| h.status.ready.load(Ordering::Relaxed), 20),
        "sync over TLS"
    );
    m.must(&["SET", "after", "sync"]);
    let off = || {
        m.info_field("replication", "master_repl_offset")
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    assert!(
        wait(|| h.status.offset.load(Ordering::Relaxed) == off(), 20),
        "stream over TLS"
    );
    let (snap, _, _, _) = h.snapshot(Duration::from_secs(5)).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(
        digest_snapshot(snap, "redis-7.0".parse().unwrap(), now).unwrap(),
        m.digest()
    );
    h.stop();
    t.join().unwrap();

    // A CA that did not sign the server's certificate: refused, never a dataset.
    let wrong_ca = TlsSettings {
        ca_file: Some(other.path().join("otherca.crt")),
        ..good.clone()
    };
    let (h, t) = replica(addr.clone(), wrong_ca);
    assert!(wait(
        || h.status.link_errors.load(Ordering::Relaxed) >= 2,
        20
    ));
    assert!(
        !h.status.ready.load(Ordering::Relaxed),
        "an unverified master gives no data"
    );
    h.stop();
    t.join().unwrap();

    // insecure_skip_verify accepts the unknown CA (the client certificate is still needed).
    let insecure = TlsSettings {
        ca_file: None,
        insecure_skip_verify: true,
        ..good
    };
    let (h, t) = replica(addr, insecure);
    assert!(
        wait(|| h.status.ready.load(Ordering::Relaxed), 20),
        "insecure_skip_verify"
    );
    h.stop();
    t.join().unwrap();
}

#[test]
fn verification_without_a_ca_is_a_configuration_error() {
    let e = replisnap::replication::tls::client_config(&TlsSettings::default()).unwrap_err();
    assert!(e.to_string().contains("ca_file is required"), "{e}");
}
