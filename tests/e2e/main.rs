//! End-to-end tests: real upstreams, the real proxy on 127.0.0.1:0, real HTTP.
//! One test binary (one link) with a module per concern.

mod support;

mod cli;
mod grpc;
mod proxy;
mod sticky;
mod streaming;
mod tls;
