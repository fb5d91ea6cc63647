//! End-to-end tests: real upstreams, the real proxy on 127.0.0.1:0, real HTTP.
//! One test binary (one link) with a module per concern.

mod support;

mod admin;
mod analysis;
mod cli;
mod conformance;
mod ctl;
mod ctl_ops;
mod cutover;
mod dashboard;
mod disk;
mod drain;
mod explain;
mod faults;
mod grpc;
mod health;
mod hostile;
mod limits;
mod locked;
mod maintenance;
mod mirror;
mod notify;
mod openapi;
mod operator;
mod operator_input;
mod park;
mod pool;
mod postgres_gate;
mod proxy;
mod quiet;
mod refusals;
mod reload;
mod rollback_time;
mod rollout;
mod security;
mod shutdown;
mod soak;
mod sticky;
mod streaming;
mod switching;
mod tls;
mod upstream_h1;
mod upstream_input;
mod watch;
mod wording;
