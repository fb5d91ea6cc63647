//! Fleet mode's etcd layer against real etcd processes on loopback
//! (`cargo test --features fleet --test fleet`; needs Debian's
//! `etcd-server`). Every test starts its own etcd, waits for conditions
//! with deadlines, and asserts on what etcd holds.
//!
//! - `state`: compare-and-swap, bootstrap, ambiguous results.
//! - `watch`: order, compaction, etcd restarted, etcd frozen.
//! - `members`: lease expiry, election and the leader guard.
//! - `cluster`: three etcd members, the etcd leader killed mid-commit.
//! - `secure`: mutual TLS and user authentication to etcd.
//! - `replicas`: three `switchyard` processes sharing one state through
//!   etcd: a switch seen everywhere, `if_generation` across members, etcd
//!   stopped, a compaction while a replica is cut off, propagation time.
//! - `outage`: etcd killed under read load and started again: reads flow,
//!   writes fenced within `write_fence`, every member converges.

mod cluster;
mod decide;
mod hold;
mod members;
mod outage;
mod replicas;
mod secure;
mod state;
mod support;
mod watch;
