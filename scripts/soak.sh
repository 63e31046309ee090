#!/usr/bin/env bash
# The soak (issue 17): the whole daemon (`replisnap run`) as a permanent replica of a real
# master under load (redis-benchmark writes plus the differential test's command mix),
# snapshots every 10 s and the stream archive on, into local storage on a tmpfs, while
# faults fire at random: the link cut in the handshake, in the full-sync payload and in
# the stream; the master restarted with its data; a failover to a standby; kill -9 of
# replisnap mid-snapshot (then a restart); the storage filled up or made read-only; the
# daemon's wall clock stepped back an hour and forward again (libfaketime). A second
# replisnap replicates the same master into S3 (SeaweedFS) through a fault-injecting HTTP
# proxy: 500 and 503 SlowDown on parts, resets mid-part, stalled answers, 412 on the
# manifest, kill -9 mid-upload (the orphan multipart upload must be aborted on restart).
# At every other fault and at the end: each daemon's snapshot's digest equals the
# master's DEBUG DIGEST, retention kept what it must, nothing partial is visible (no
# object without its manifest, no open multipart upload); after each fault the lag is
# back under 1 MB within 5 s; counters (uploads_total too) agree with the faults; RSS
# stays within 1.2x of its level (the highest sample of its second minute). Prints the quiet points and a
# table; exits non-zero on any violation.
#
#   SOAK_MINUTES=30 (default)   how long
#   SOAK_SERVER=redis-8.6       the master: redis-8.6 (default) or valkey-9.1, any of the
#                               installed matrix (scripts/install-test-servers.sh)
#   SOAK_SEED=N                 repeat a run's random choices (each run prints its seed)
#
# Needs root (it mounts a tmpfs), the test servers with SeaweedFS (REPLISNAP_TEST_SERVERS,
# default ~/.cache/replisnap/test-servers) and libfaketime (apt-get install faketime). Without SOAK_MINUTES the same test is the ~1-2 minute CI
# version: cargo test --test soak. Details: docs/soak.md.
set -euo pipefail
cd "$(dirname "$0")/.."

export SOAK_MINUTES="${SOAK_MINUTES:-30}"
export SOAK_SERVER="${SOAK_SERVER:-redis-8.6}"
export REPLISNAP_TEST_SERVERS="${REPLISNAP_TEST_SERVERS:-$HOME/.cache/replisnap/test-servers}"
# A missing server or privilege is a failure, never a skip.
export CI="${CI:-1}"
exec cargo test --release --test soak -- --nocapture
