use super::*;

const FULL: &str = r#"
[source]
address = "10.0.0.5:6379"
username = "replisnap"
password_file = "/etc/replisnap/password"
psync_command = "xhma21xfkssync"
[source.tls]
ca_file = "/etc/ssl/certs/ca.pem"

[replica]
state_dir = "/var/lib/replisnap"
announce_port = 6380

[snapshot]
schedule = "0 0 * * * *"
timezone = "Europe/Paris"

[storage]
kind = "s3"
bucket = "my-backups"
prefix = "prod-cache/"
region = "eu-west-1"
sse = "aws:kms"
kms_key_id = "arn:aws:kms:eu-west-1:1:key/x"

[retention]
keep_last = 3
keep_daily = 7

[http]
listen = "127.0.0.1:9187"
"#;

#[test]
fn the_spec_example_parses_with_defaults_filled() {
    let c = Config::parse(FULL, "t.toml").unwrap();
    assert_eq!(c.source.address, "10.0.0.5:6379");
    assert_eq!(c.replica.announce_port, 6380);
    assert!(c.snapshot.rdb_compression);
    assert_eq!(c.storage.as_ref().unwrap().kind, StorageKind::S3);
    assert_eq!(c.retention.as_ref().unwrap().keep_daily, Some(7));
    let minimal = Config::parse("[source]\naddress = \"127.0.0.1:6379\"\n", "m.toml").unwrap();
    assert_eq!(minimal.replica, Replica::default());
    assert_eq!(minimal.http.listen.port(), 9187);
}

#[test]
fn unknown_keys_name_the_key_and_line() {
    let e = Config::parse("[source]\naddress = \"h:1\"\nadress = \"typo\"\n", "c.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("c.toml") && e.contains("adress") && e.contains("line 3"),
        "{e}"
    );
    let e = Config::parse("[source]\naddress = \"h:1\"\n[snapshots]\n", "c.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("snapshots"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    let cases = [
        ("[source]\naddress = \"nohost\"\n", "source.address"),
        ("[source]\naddress = \"h:1\"\npassword = \"a\"\npassword_file = \"/x\"\n", "source.password"),
        ("[source]\naddress = \"h:1\"\n[snapshot]\nschedule = \"* * *\"\n", "snapshot.schedule"),
        ("[source]\naddress = \"h:1\"\n[storage]\nkind = \"local\"\n", "storage.path"),
        ("[source]\naddress = \"h:1\"\n[storage]\nkind = \"s3\"\nbucket = \"b\"\nsse = \"AES512\"\n", "storage.sse"),
        ("[source]\naddress = \"h:1\"\n[retention]\nkeep_last = 0\n", "retention"),
        ("[source]\naddress = \"h:1\"\n[storage]\nkind = \"local\"\npath = \"/b\"\n[verify]\nschedule = \"0 0 3 * *\"\n", "verify.schedule"),
        ("[source]\naddress = \"h:1\"\n[verify]\nschedule = \"0 0 3 * * *\"\n", "verify.schedule"),
        ("[source]\naddress = \"h:1\"\n[storage]\nkind = \"local\"\npath = \"/b\"\n[verify]\ntimezone = \"UTC\"\n", "schedule"),
        ("[source]\naddress = \"h:1\"\n[storage]\nkind = \"local\"\npath = \"/b\"\n[verify]\nschedule = \"0 0 3 * * *\"\nevery = 1\n", "every"),
    ];
    for (text, key) in cases {
        let e = Config::parse(text, "c.toml").unwrap_err().to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
    let e = Config::parse(
        "[source]\naddress = \"h:1\"\n[replica]\nannounce_port = 70000\n",
        "c.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("announce_port"), "{e}");
}

#[test]
fn secrets_are_redacted() {
    let c = Config::parse(
        "[source]\naddress = \"h:1\"\npassword = \"hunter2\"\n",
        "c.toml",
    )
    .unwrap();
    assert_eq!(c.source_password().unwrap().as_deref(), Some("hunter2"));
    let shown = toml::to_string(&c.redacted()).unwrap();
    assert!(
        !shown.contains("hunter2") && shown.contains("<redacted>"),
        "{shown}"
    );
}

#[test]
fn max_command_bytes_defaults_to_1_gib_and_refuses_below_1_mib() {
    let c = Config::parse("[source]\naddress = \"h:1\"\n", "c.toml").unwrap();
    assert_eq!(c.replica.max_command_bytes, 1 << 30);
    let c = Config::parse(
        "[source]\naddress = \"h:1\"\n[replica]\nmax_command_bytes = 4194304\n",
        "c.toml",
    )
    .unwrap();
    assert_eq!(c.replica.max_command_bytes, 4 << 20);
    let at_min = format!(
        "[source]\naddress = \"h:1\"\n[replica]\nmax_command_bytes = {MIN_COMMAND_BYTES}\n"
    );
    assert!(Config::parse(&at_min, "c.toml").is_ok());
    for bad in ["1048575", "0", "-1", "\"1G\""] {
        let text = format!("[source]\naddress = \"h:1\"\n[replica]\nmax_command_bytes = {bad}\n");
        let e = Config::parse(&text, "c.toml").unwrap_err().to_string();
        assert!(e.contains("max_command_bytes"), "{bad}: {e}");
    }
}

#[test]
fn s3_keys_are_checked() {
    let base = "[source]\naddress = \"h:1\"\n[storage]\n";
    let ok = format!(
        "{base}kind = \"s3\"\nbucket = \"my-backups\"\nprefix = \"p/\"\nendpoint = \"http://127.0.0.1:8333\"\n\
         force_path_style = true\npart_size = 5242880\nupload_concurrency = 2\nchecksum = \"crc32c\"\n\
         request_checksum_calculation = \"when_required\"\nresponse_checksum_validation = \"when_required\"\n\
         max_attempts = 3\nlease_seconds = 30\n"
    );
    let c = Config::parse(&ok, "c.toml").unwrap();
    let s = c.storage.unwrap();
    assert_eq!(s.part_size, Some(5 << 20));
    assert_eq!(s.upload_concurrency, Some(2));
    // Both kinds wait for the holder when asked to.
    for kind in [
        "kind = \"s3\"\nbucket = \"abc\"",
        "kind = \"local\"\npath = \"/x\"",
    ] {
        let c = Config::parse(
            &format!("{base}{kind}\nlease_wait_seconds = 300\n"),
            "c.toml",
        )
        .unwrap();
        assert_eq!(c.storage.unwrap().lease_wait_seconds, Some(300), "{kind}");
    }
    let cases = [
        ("kind = \"s3\"\nbucket = \"b\"\n", "storage.bucket"),
        ("kind = \"s3\"\nbucket = \"My_Bucket\"\n", "storage.bucket"),
        (
            "kind = \"s3\"\nbucket = \"abc\"\npart_size = 1024\n",
            "storage.part_size",
        ),
        (
            "kind = \"s3\"\nbucket = \"abc\"\nupload_concurrency = 0\n",
            "storage.upload_concurrency",
        ),
        (
            "kind = \"s3\"\nbucket = \"abc\"\nchecksum = \"md5\"\n",
            "storage.checksum",
        ),
        (
            "kind = \"s3\"\nbucket = \"abc\"\nrequest_checksum_calculation = \"never\"\n",
            "storage.request_checksum_calculation",
        ),
        (
            "kind = \"s3\"\nbucket = \"abc\"\nendpoint = \"127.0.0.1:9000\"\n",
            "storage.endpoint",
        ),
        (
            "kind = \"s3\"\nbucket = \"abc\"\nprefix = \"/abs\"\n",
            "storage.prefix",
        ),
        (
            "kind = \"s3\"\nbucket = \"abc\"\nlease_seconds = 1\n",
            "storage.lease_seconds",
        ),
        (
            "kind = \"s3\"\nbucket = \"abc\"\nread_timeout_seconds = 0\n",
            "storage.read_timeout_seconds",
        ),
        (
            "kind = \"s3\"\nbucket = \"abc\"\nread_timeout_seconds = 3601\n",
            "storage.read_timeout_seconds",
        ),
        (
            "kind = \"local\"\npath = \"/x\"\nread_timeout_seconds = 5\n",
            "storage.read_timeout_seconds",
        ),
        (
            "kind = \"s3\"\nbucket = \"abc\"\nlease_wait_seconds = 86401\n",
            "storage.lease_wait_seconds",
        ),
        (
            "kind = \"local\"\npath = \"/x\"\nlease_wait_seconds = 100000\n",
            "storage.lease_wait_seconds",
        ),
        (
            "kind = \"s3\"\nbucket = \"abc\"\npath = \"/x\"\n",
            "storage.path",
        ),
        (
            "kind = \"local\"\npath = \"/x\"\nbucket = \"abc\"\n",
            "storage.bucket",
        ),
        (
            "kind = \"local\"\npath = \"/x\"\npart_size = 5242880\n",
            "storage.part_size",
        ),
    ];
    for (text, key) in cases {
        let e = Config::parse(&format!("{base}{text}"), "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
}

#[test]
fn the_verify_section_is_optional_and_prints_back() {
    let text = "[source]\naddress = \"h:1\"\n[storage]\nkind = \"local\"\npath = \"/b\"\n\
                [verify]\nschedule = \"0 30 3 * * *\"\n";
    let c = Config::parse(text, "v.toml").unwrap();
    let v = c.verify.as_ref().unwrap();
    assert_eq!(v.schedule, "0 30 3 * * *");
    assert_eq!(v.timezone, None);
    // What check-config prints parses back to the same config.
    let shown = toml::to_string(&c.redacted()).unwrap();
    assert!(
        shown.contains("[verify]") && shown.contains("0 30 3 * * *"),
        "{shown}"
    );
    assert_eq!(Config::parse(&shown, "again.toml").unwrap(), c);
    let none = Config::parse("[source]\naddress = \"h:1\"\n", "m.toml").unwrap();
    assert!(none.verify.is_none());
    assert!(!toml::to_string(&none).unwrap().contains("verify"));
}

#[test]
fn parse_errors_on_secret_lines_never_show_the_value() {
    for text in [
        "[source]\naddress = \"h:1\"\npassword=hunter2-secret\n",
        "[source]\naddress = \"h:1\"\npassword = 4242424242\n",
        "[source]\naddress = \"h:1\"\npassword = \"hunter2-secret\" \"again\"\n",
        "[source]\naddress = \"h:1\"\npassword = \"hunter2-secret\"\npassword = \"hunter2-secret\"\n",
        "[http]\ntoken_file = 4242424242\n[source]\naddress = \"h:1\"\n",
        "[storage]\nkind = \"s3\"\nbucket = \"b\"\nsecret_access_key = \"hunter2-secret\"\n[source]\naddress = \"h:1\"\n",
    ] {
        let e = Config::parse(text, "c.toml").unwrap_err().to_string();
        assert!(
            !e.contains("hunter2") && !e.contains("4242424242"),
            "{text:?} → {e}"
        );
        assert!(e.starts_with("c.toml: line "), "{e}");
    }
    // Other lines are still quoted as they are.
    let e = Config::parse("[source]\naddress = 5\n", "c.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("(`address = 5`)"), "{e}");
}

#[test]
fn sentinels_replace_the_address() {
    let ok = Config::parse(
        "[source]\nsentinels = [\"10.0.0.7:26379\", \"10.0.0.8:26379\"]\nmaster_name = \"mymaster\"\n",
        "c.toml",
    )
    .expect("sentinels without an address");
    assert_eq!(ok.source.sentinels.len(), 2);
    assert!(ok.source.address.is_empty());
    let refused = |text: &str, key: &str| {
        let e = Config::parse(text, "c.toml").expect_err(text).to_string();
        assert!(e.contains(key), "{text}: {e}");
    };
    refused(
        "[source]\nsentinels = [\"10.0.0.7:26379\"]\n",
        "source.master_name",
    );
    refused(
        "[source]\naddress = \"a:1\"\nsentinels = [\"10.0.0.7:26379\"]\nmaster_name = \"m\"\n",
        "source.sentinels",
    );
    refused(
        "[source]\nsentinels = [\"nope\"]\nmaster_name = \"m\"\n",
        "source.sentinels",
    );
    refused(
        "[source]\naddress = \"a:1\"\nmaster_name = \"m\"\n",
        "source.master_name",
    );
    refused("[source]\n", "source.address");
    refused(
        "[source]\nsentinels = [\"s:1\"]\nmaster_name = \"m\"\nsentinel_username = \"u\"\n",
        "source.sentinel_username",
    );
}

#[test]
fn full_sync_from_is_a_replica_address_with_a_fallback() {
    let ok = Config::parse(
        "[source]\naddress = \"10.0.0.5:6379\"\nfull_sync_from = \"10.0.0.6:6379\"\n",
        "c.toml",
    )
    .expect("full_sync_from");
    assert_eq!(ok.source.full_sync_from.as_deref(), Some("10.0.0.6:6379"));
    assert_eq!(ok.source.full_sync_fallback, None, "default: never");
    assert_eq!(FullSyncFallback::default(), FullSyncFallback::Never);
    let ok = Config::parse(
        "[source]\naddress = \"a:1\"\nfull_sync_from = \"b:1\"\nfull_sync_fallback = \"primary\"\n",
        "c.toml",
    )
    .expect("fallback primary");
    assert_eq!(
        ok.source.full_sync_fallback,
        Some(FullSyncFallback::Primary)
    );
    let refused = |text: &str, key: &str| {
        let e = Config::parse(text, "c.toml").expect_err(text).to_string();
        assert!(e.contains(key), "{text}: {e}");
    };
    refused(
        "[source]\naddress = \"a:1\"\nfull_sync_from = \"b\"\n",
        "source.full_sync_from",
    );
    refused(
        "[source]\naddress = \"a:1\"\nfull_sync_from = \"A:1\"\n",
        "source.full_sync_from",
    );
    refused(
        "[source]\nsentinels = [\"s:1\"]\nmaster_name = \"m\"\nfull_sync_from = \"b:1\"\n",
        "source.full_sync_from",
    );
    refused(
        "[source]\naddress = \"a:1\"\nfull_sync_fallback = \"never\"\n",
        "source.full_sync_fallback",
    );
    refused(
        "[source]\naddress = \"a:1\"\nfull_sync_from = \"b:1\"\nfull_sync_fallback = \"sometimes\"\n",
        "full_sync_fallback",
    );
}

#[test]
fn psync_commands_are_names_per_address() {
    let c = Config::parse(
        "[source]\naddress = \"a:1\"\npsync_commands = { \"10.0.0.1:6379\" = \"xyz\" }\n",
        "c.toml",
    )
    .unwrap();
    assert_eq!(
        c.source
            .psync_commands
            .get("10.0.0.1:6379")
            .map(String::as_str),
        Some("xyz")
    );
    for (bad, what) in [
        ("{ \"10.0.0.1\" = \"xyz\" }", "not host:port"),
        ("{ \"10.0.0.1:6379\" = \"\" }", "not a command name"),
        ("{ \"10.0.0.1:6379\" = \"x y\" }", "not a command name"),
    ] {
        let text = format!("[source]\naddress = \"a:1\"\npsync_commands = {bad}\n");
        let e = Config::parse(&text, "c.toml").expect_err(bad).to_string();
        assert!(
            e.contains("source.psync_commands") && e.contains(what),
            "{bad}: {e}"
        );
    }
}

#[test]
fn dual_channel_is_on_by_default_and_its_memory_bounded() {
    let c = Config::parse("[source]\naddress = \"a:1\"\n", "c.toml").unwrap();
    assert_eq!(c.source.dual_channel, None, "default: on");
    let c = Config::parse(
        "[source]\naddress = \"a:1\"\ndual_channel = false\n",
        "c.toml",
    )
    .unwrap();
    assert_eq!(c.source.dual_channel, Some(false));
    let c = Config::parse(
        "[source]\naddress = \"a:1\"\ndual_channel_memory_mb = 256\n",
        "c.toml",
    )
    .unwrap();
    assert_eq!(c.source.dual_channel_memory_mb, Some(256));
    for bad in [
        "dual_channel_memory_mb = 0",
        "dual_channel_memory_mb = 65537",
        "dual_channel = false\ndual_channel_memory_mb = 64",
    ] {
        let text = format!("[source]\naddress = \"a:1\"\n{bad}\n");
        let e = Config::parse(&text, "c.toml").expect_err(bad).to_string();
        assert!(e.contains("source.dual_channel_memory_mb"), "{bad}: {e}");
    }
    let e = Config::parse(
        "[source]\naddress = \"a:1\"\ndual_channel = \"yes\"\n",
        "c.toml",
    )
    .expect_err("a string")
    .to_string();
    assert!(e.contains("dual_channel"), "{e}");
}

#[test]
fn staging_is_for_s3_with_a_state_dir() {
    let s3 = "[source]\naddress = \"h:1\"\n[storage]\nkind = \"s3\"\nbucket = \"abc\"\n";
    let c = Config::parse(s3, "c.toml").unwrap();
    assert_eq!(c.storage.unwrap().staging, Staging::None, "default");
    let c = Config::parse(&format!("{s3}staging = \"local\"\n"), "c.toml").unwrap();
    assert_eq!(c.storage.unwrap().staging, Staging::Local);
    let refused = [
        format!("{s3}staging = \"disk\"\n"),
        "[source]\naddress = \"h:1\"\n[storage]\nkind = \"local\"\npath = \"/x\"\n\
         staging = \"local\"\n"
            .to_string(),
        format!("{s3}staging = \"local\"\n[replica]\nstate_dir = \"\"\n"),
    ];
    for text in refused {
        let e = Config::parse(&text, "c.toml").unwrap_err().to_string();
        assert!(e.contains("staging"), "{text}: {e}");
    }
}

#[test]
fn archive_keys_are_validated() {
    let base = "[source]\naddress = \"h:1\"\n[storage]\nkind = \"local\"\npath = \"/b\"\n";
    let c = Config::parse(&format!("{base}[archive]\nenabled = true\n"), "a.toml").unwrap();
    let a = c.archive.unwrap();
    assert_eq!((a.segment_seconds, a.segment_bytes), (10, 16 << 20));
    for (extra, key) in [
        ("segment_seconds = 0", "archive.segment_seconds"),
        ("segment_bytes = 100", "archive.segment_bytes"),
        ("segment_bytes = 1000000000000", "archive.segment_bytes"),
    ] {
        let e = Config::parse(
            &format!("{base}[archive]\nenabled = true\n{extra}\n"),
            "a.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(key), "{e}");
    }
    let e = Config::parse(
        "[source]\naddress = \"h:1\"\n[archive]\nenabled = true\n",
        "a.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("archive.enabled") && e.contains("[storage]"),
        "{e}"
    );
}

#[test]
fn cluster_takes_a_seed_and_refuses_what_is_not_per_shard_yet() {
    let ok = Config::parse(
        "[source]\naddress = \"10.0.0.5:7000\"\ncluster = true\n",
        "c.toml",
    )
    .expect("a cluster seed");
    assert!(ok.source.cluster);
    let refused = |text: &str, what: &str| {
        let e = Config::parse(text, "c.toml").expect_err(text).to_string();
        assert!(
            e.contains("source.cluster") && e.contains(what),
            "{text}: {e}"
        );
    };
    refused(
        "[source]\naddress = \"a:1\"\ncluster = true\nfull_sync_from = \"b:1\"\n",
        "full_sync_from",
    );
    refused(
        "[source]\naddress = \"a:1\"\ncluster = true\n[archive]\nenabled = true\n[storage]\nkind = \"local\"\npath = \"/x\"\n",
        "[archive]",
    );
    refused(
        "[source]\naddress = \"a:1\"\ncluster = true\n[notify]\nheartbeat_url = \"http://h/\"\n",
        "[notify]",
    );
}
