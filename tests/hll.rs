//! `replisnap::hll` against real servers: every value we compute must equal, byte for byte,
//! what the server stores (`GET key`) after the same command.
//!
//! * `workload_matches_servers`: seeded random PFADD / PFMERGE / PFCOUNT (one and several
//!   keys) / PFDEBUG TODENSE / DEL on a few keys, under several `hll-sparse-max-bytes`; after
//!   every command each key it touched is compared, and the replies too.
//! * `corrupt_values_match_servers`: mutated and hand-made values are SET on the server and
//!   one command runs on them; the server must refuse exactly when we return an error (with
//!   the same error code), and store our bytes when it accepts.
//! * `count_and_todense_propagate`: a real replica of the same version shows that a
//!   single-key PFCOUNT with a stale cache and PFDEBUG TODENSE on a sparse value reach
//!   replicas, and that a multi-key PFCOUNT writes nothing.
//! * `garbage_never_panics`: random mutations of valid values, no server.
//!
//! `HLL_SEED` picks the seed (default fixed), `HLL_COMMANDS` the commands per phase.

mod support;

#[path = "hll/common.rs"]
mod common;
#[path = "hll/corrupt.rs"]
mod corrupt;
#[path = "hll/edges.rs"]
mod edges;
#[path = "hll/workload.rs"]
mod workload;
