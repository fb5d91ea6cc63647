//! The data plane: listeners (plain and TLS) and their accept loop, their
//! graceful shutdown (`stop`), idle HTTP/1 connections parked without
//! buffers (`park`), the client connection's stream (`client_io`), the per-request handler (acting
//! on the route decision of `routing`), the exchange with the upstream, the
//! one place a request's outcome is recorded, header rewriting, response
//! bodies, `Max-Forwards`, copies to the candidate compared with the live
//! answer (`mirror`), and the errors the proxy answers itself. The
//! client's request body on its way out is `upstream::request_body` (the
//! upstream client sends it).
//!
//! Owns client connections and forwarding. It reads the routing table and
//! never writes deployment state; it never waits on a lock.

pub mod body;
pub mod client_io;
pub mod error;
pub mod exchange;
pub mod handler;
pub mod headers;
pub mod limits;
pub mod listener;
pub mod listener_tls;
pub mod max_forwards;
pub mod mirror;
pub mod outcome;
pub mod park;
pub mod stop;

pub use listener::{serve, ListenerCtx};
