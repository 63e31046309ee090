//! A faked wall clock for a child process (libfaketime, Debian package `faketime`):
//! `LD_PRELOAD` of `libfaketime.so.1` with `FAKETIME_TIMESTAMP_FILE`, re-read on every
//! call (`FAKETIME_NO_CACHE=1`) or at most once a second ([`FakeClock::cached`]: every
//! read of the wall clock is otherwise an open, stat, read and close of the file, which
//! under a soak's write load took over half the replica thread), the monotonic clock left alone
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`). The test steps the child's wall clock by rewriting
//! the file's offset; the machine's clock is never touched. Under `CI` a missing library
//! fails the test; elsewhere the test is skipped with a message.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Where Debian's `faketime` package puts the library (`REPLISNAP_FAKETIME_LIB` overrides).
const PLACES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

pub struct FakeClock {
    lib: PathBuf,
    file: PathBuf,
    /// `FAKETIME_CACHE_DURATION` in seconds; 0: re-read on every call.
    cache_seconds: u32,
}

pub fn library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REPLISNAP_FAKETIME_LIB").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    PLACES.iter().map(PathBuf::from).find(|p| p.is_file())
}

impl FakeClock {
    /// The offset file in `dir`, at +0. None (skipped) without the library outside CI.
    pub fn new(dir: &Path) -> Option<FakeClock> {
        let Some(lib) = library() else {
            let msg = "libfaketime not found (apt-get install faketime)";
            assert!(std::env::var_os("CI").is_none(), "{msg}");
            eprintln!("skipped: {msg}");
            return None;
        };
        let c = FakeClock {
            lib,
            file: dir.join("faketime-offset"),
            cache_seconds: 0,
        };
        c.set_offset(0);
        Some(c)
    }

    /// [`FakeClock::new`], the file re-read at most every `seconds`: a step is seen by the
    /// child up to that long after [`FakeClock::set_offset`].
    pub fn cached(dir: &Path, seconds: u32) -> Option<FakeClock> {
        let mut c = FakeClock::new(dir)?;
        c.cache_seconds = seconds;
        Some(c)
    }

    /// The environment a child needs to run on this clock.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", self.lib.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            match self.cache_seconds {
                0 => ("FAKETIME_NO_CACHE", "1".into()),
                n => ("FAKETIME_CACHE_DURATION", n.to_string()),
            },
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ]
    }

    /// Step the child's wall clock to real time + `seconds` (negative: back).
    pub fn set_offset(&self, seconds: i64) {
        // Written aside and renamed: the child never reads half a line.
        let tmp = self.file.with_extension("new");
        std::fs::write(&tmp, format!("{seconds:+}\n")).expect("write the faketime offset");
        std::fs::rename(&tmp, &self.file).expect("rename the faketime offset");
    }
}
