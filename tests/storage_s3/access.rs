//! Who may write a prefix: one writer at a time (the lease), and credentials or a bucket
//! that are wrong named in the error.

use super::*;

#[test]
fn one_writer_per_prefix() {
    let Some(sw) = server() else { return };
    let bucket = sw.new_bucket("lease");
    // Eight storages race for one prefix: exactly one wins; the others name it.
    let results: Vec<(S3Storage, Result<(), StorageError>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                sc.spawn(|| {
                    let s = sw.storage_in(&bucket, "p/", |_| {});
                    let r = s.claim();
                    (s, r)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners = results.iter().filter(|(_, r)| r.is_ok()).count();
    assert_eq!(
        winners,
        1,
        "{:?}",
        results.iter().map(|r| &r.1).collect::<Vec<_>>()
    );
    let lease: serde_json::Value = serde_json::from_slice(&get(&results[0].0, "p/lock")).unwrap();
    let holder = lease["holder"].as_str().unwrap().to_string();
    for (_, r) in &results {
        if let Err(e) = r {
            assert!(matches!(e, StorageError::Held { .. }), "{e}");
            assert!(
                e.to_string().contains(&holder),
                "{e} does not name {holder}"
            );
        }
    }
    let (winner, _) = results.iter().find(|(_, r)| r.is_ok()).unwrap();
    let (loser, _) = results.iter().find(|(_, r)| r.is_err()).unwrap();
    // The loser writes and deletes nothing; its cleanup is "busy".
    let e = loser
        .create_rdb(t("2026-11-25T08:00:00Z"))
        .err()
        .expect("a second writer");
    assert!(matches!(e, StorageError::Held { .. }), "{e}");
    assert!(loser.cleanup().unwrap().busy);
    store(winner, "2026-11-25T08:00:00Z", &rdb_bytes(100, 1));
    let id = SnapshotId::parse("20261125T080000Z").unwrap();
    assert!(matches!(loser.delete(&id), Err(StorageError::Held { .. })));
    assert_eq!(ids(loser), ["20261125T080000Z"], "reading needs no lease");
    // Released, it can be taken.
    winner.release();
    loser.claim().unwrap();
    drop(results);

    // An expired lease of a dead holder is taken over; a live one is not.
    let other = sw.storage_in(&bucket, "q/", |_| {});
    let past = serde_json::json!({"holder": "dead-host pid 1 #0", "until": "2020-01-01T00:00:00Z"});
    put(&other, "q/lock", past.to_string().as_bytes());
    other.claim().unwrap();
    let lease: serde_json::Value = serde_json::from_slice(&get(&other, "q/lock")).unwrap();
    assert_ne!(lease["holder"], "dead-host pid 1 #0");
    let third = sw.storage_in(&bucket, "q/", |_| {});
    assert!(matches!(third.claim(), Err(StorageError::Held { .. })));
}

#[test]
fn bad_credentials_and_a_missing_bucket_are_named() {
    let Some(sw) = server() else { return };
    let s = sw.storage_in("no-such-bucket-here", "", |c| c.max_attempts = Some(1));
    let e = s.list().unwrap_err().to_string();
    assert!(
        e.contains("s3://no-such-bucket-here/") && e.contains("NoSuchBucket"),
        "{e}"
    );
    let cfg = sw.config("no-such-bucket-here", "");
    let creds = aws_sdk_s3::config::Credentials::new("wrong", "wrong", None, None, "t");
    let s = S3Storage::open(&cfg, Some(creds)).unwrap();
    let e = s.list().unwrap_err().to_string();
    assert!(e.contains("HTTP 403"), "{e}");
    let _ = Seaweed::credentials();
}
