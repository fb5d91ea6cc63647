//! Upstreams: endpoints with their health and in-flight atomics, and the
//! pooled keep-alive connections to them (HTTP/1.1 or HTTP/2, plain or TLS),
//! and the active health checks; [`outbound`]: the control plane's one-shot
//! calls to checks and webhooks.
//!
//! Owns everything about talking to one upstream endpoint. It must not decide
//! which pool a request goes to (that is `routing`) nor change deployment state.

pub mod connector;
pub mod copied;
pub mod endpoint;
pub mod h1;
pub mod h2_client;
pub mod health;
pub mod idle;
pub mod outbound;
pub mod pool_tls;
pub mod request_body;

pub use connector::{Connector, UpstreamBody, UpstreamConn, UpstreamError};
pub use endpoint::{CheckResult, Endpoint, EndpointState};
