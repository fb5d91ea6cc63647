//! The data plane: listeners (plain and TLS), the client connection's stream
//! (`client_io`), the per-request handler (acting on the route decision of
//! `routing`), the exchange with the upstream, the one place a request's
//! outcome is recorded, header rewriting, request and response bodies,
//! `Max-Forwards`, and the errors the proxy answers itself.
//!
//! Owns client connections and forwarding. It reads the routing table and
//! never writes deployment state; it never waits on a lock.

pub mod body;
pub mod client_io;
pub mod error;
pub mod exchange;
pub mod guard;
pub mod handler;
pub mod headers;
pub mod listener;
pub mod max_forwards;
pub mod outcome;
pub mod request_body;
pub mod tls;

pub use listener::{serve, ListenerCtx};
