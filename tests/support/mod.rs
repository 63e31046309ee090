//! Shared helpers for integration tests: include with `mod support;`.
//! `resp` is a minimal RESP2 client; `server` starts and stops real servers.
#![allow(unused_imports)]
pub mod cli;
pub mod cluster;
pub mod faketime;
pub mod pki;
pub mod proxy;
pub mod replica;
pub mod resp;
pub mod server;
pub use cli::replisnap;
pub use resp::*;
pub use server::*;
