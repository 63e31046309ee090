//! replisnap: back up Redis and Valkey as a permanent replica.
//!
//! The roles, from the wire to the bucket: `rdb` reads (and will write) the RDB format;
//! `cli` is the command line. Later modules (replication, keyspace, snapshot, storage)
//! plug in beside them; docs/architecture.md is the map.

pub mod atomic_file;
pub mod cli;
pub mod commands;
pub mod config;
pub mod convert;
pub mod digest;
pub mod hll;
pub mod http;
pub mod keyspace;
pub mod metrics;
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
