//! The last word of a plain `cargo test`: how many tests skipped for want of a real server,
//! and the command that runs them. Cargo runs integration test binaries in name order, so
//! this one (`zz_`) reads what the others recorded during this run (`support::skips_file`)
//! and prints it past libtest's output capture. With `CI` set a missing server of the
//! required matrix fails its test instead (`support::require`); optional extras may still
//! be skipped, and are reported here.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

#[test]
fn report_tests_skipped_for_want_of_a_server() {
    let file = support::skips_file();
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    let mut servers: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tests = BTreeSet::new();
    for line in text.lines() {
        let mut w = line.split(' ');
        let (Some(binary), Some(test), Some(server)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        *servers.entry(server).or_default() += 1;
        tests.insert((binary, test));
    }
    let total = tests.len();
    if total == 0 {
        return;
    }
    let list: Vec<String> = servers.iter().map(|(s, n)| format!("{s} ({n})")).collect();
    let msg = format!(
        "\n\
         ************************************************************************\n\
         * {total} TEST(S) SKIPPED, real servers missing (uses): {}\n\
         * These tests passed without running. Run them with: scripts/test.sh\n\
         * (it installs the servers, then runs every test; CI=1 makes a skip fail)\n\
         ************************************************************************\n",
        list.join(", ")
    );
    // Past libtest's capture, so a passing run shows it.
    let _ = std::io::stderr().write_all(msg.as_bytes());
}
