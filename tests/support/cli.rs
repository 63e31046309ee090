//! Running the replisnap binary as a user does.
#![allow(dead_code)]

use std::process::Command;

/// Run the binary with `args` (no config added); (exit code, stdout, stderr).
pub fn replisnap(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .args(args)
        .output()
        .expect("run replisnap");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
