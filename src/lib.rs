//! replisnap: back up Redis and Valkey as a permanent replica.
//!
//! `src/main.rs` only calls [`cli::main`]; everything else is this library. Each module
//! owns one concern and says in its `//!` doc what it must never do; docs/architecture.md
//! is the longer map.
//!
//! The roles, from the wire to the bucket:
//!
//! - The command line: [`cli`] parses arguments, runs one verb per file and maps outcomes
//!   to exit codes; [`config`] reads and validates the TOML config.
//! - The daemon: [`daemon`] assembles the parts below (warm restart, replica, snapshots,
//!   schedules, HTTP, metrics, signals, systemd notifications) and stops them in order;
//!   `replisnap run` only calls [`daemon::run`]; [`heartbeat`] is how its long-running
//!   threads show they still move.
//! - Following the master: [`replication`] is the permanent replica (link, handshake, full
//!   sync, stream) over [`resp`] frames; [`cluster`] finds a cluster's shards and each
//!   shard's current primary; [`commands`] applies the stream to the
//!   [`keyspace`], whose snapshots are iterate-and-record (no fork); [`hll`] keeps
//!   HyperLogLog bytes exactly as servers write them.
//! - Snapshots: [`snapshot`] captures, writes and schedules them (and the local shutdown
//!   checkpoint a restart resumes from); [`storage`] holds them (local directory or S3)
//!   with their manifests; [`retention`] decides which to keep.
//! - The RDB format: [`rdb`] reads and writes it; [`summary`] is what `inspect` prints and
//!   manifests record; [`digest`] computes `DEBUG DIGEST` offline; [`convert`] rewrites a
//!   file for another server; [`server_version`] names the targets; [`dtoa`] prints
//!   doubles as each server does (scores in digests and in listpacks).
//! - Point-in-time recovery: [`archive`] stores the applied stream in checksummed segments
//!   beside the snapshots; [`pitr`] replays a snapshot and the archived stream after it to
//!   any archived offset or second.
//! - Getting data back: [`verify`] proves a snapshot good; [`restore`] pushes one into a
//!   live server; [`atomic_file`] is how every output file appears; [`mem`] gives freed
//!   memory back to the OS after bulk frees.
//! - Outward faces: [`http`] serves `/metrics`, `/healthz`, `/readyz` and `/snapshot`;
//!   [`metrics`] owns every Prometheus series.

pub mod archive;
pub mod atomic_file;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod convert;
pub mod daemon;
pub mod digest;
pub mod dtoa;
pub mod heartbeat;
pub mod hll;
pub mod http;
pub mod keyspace;
pub mod mem;
pub mod metrics;
pub mod pitr;
pub mod rdb;
pub mod replication;
pub mod resp;
pub mod restore;
pub mod retention;
pub mod server_version;
pub mod snapshot;
pub mod storage;
pub mod summary;
pub mod verify;
