//! Shared helpers for integration tests: include with `mod support;`.
pub mod server;
pub use server::*;
