//! The proxy's own HTTP/1.1 client for upstream connections.
//!
//! hyper's client runs each connection as a task of its own and hands
//! requests, responses and every body chunk across channels to it: about
//! four task wake-ups and a dozen channel operations per proxied request,
//! more than a third of the proxy's user-space instructions. Here the
//! request's own task writes the request and reads the response on the
//! connection it owns, and the response body reads the socket directly; the
//! connection goes back to its endpoint's idle queue when the body has been
//! read to its end.
//!
//! Framing follows RFC 9112: a response to `HEAD`, a 204 or a 304 has no
//! body; `Transfer-Encoding` ending in `chunked` is decoded (trailers kept);
//! any other transfer coding, or no length at all, is read until the
//! upstream closes; otherwise `Content-Length`, which must be one valid
//! number (repeated values must agree). Interim 1xx responses are skipped.
//! Upgrades (WebSocket) are not handled here: the connector hands such
//! requests to hyper, on a connection of their own.
//!
//! One file per concept, each owning its part and nothing else:
//! - [`conn`]: the connection: sending one exchange, reading into its
//!   buffer, when it may be reused;
//! - [`encode`]: the request head (and chunk-size lines) as bytes;
//! - [`head`]: parsing a response head and deciding its body's framing;
//! - [`body`]: the response body, read straight from the connection;
//! - [`chunked`]: decoding `chunked` framing over buffered bytes.
//!
//! This module owns the one error type of them all. It must not pick
//! endpoints, pool connections (that is `idle` and `connector`) or know
//! about clients.

mod body;
mod chunked;
mod conn;
mod encode;
mod head;

pub use body::H1Body;
pub use conn::{H1Conn, SendError};

// For `crate::fuzzing`, which drives the parsers without a socket.
pub(crate) use body::Framing;
pub(crate) use chunked::{step_chunked, ChunkState, Step};
pub(crate) use encode::hex_len;
pub(crate) use head::parse_head;

/// Header fields in one response head (as for requests): more is invalid.
pub(crate) const MAX_HEADERS: usize = 100;
/// A response head (or a trailer section) larger than this is invalid.
const MAX_HEAD_BYTES: usize = 256 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an exchange on an [`H1Conn`] failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// Reset, refused mid-way, or any other socket error.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    #[error("connection closed before the response was complete")]
    Closed,
    #[error("{0}")]
    Invalid(&'static str),
    /// The client's request body failed: the client's fault.
    #[error("{0}")]
    ClientBody(#[source] BoxError),
}

impl H1Error {
    /// The upstream broke the protocol (as opposed to the connection).
    pub fn is_protocol(&self) -> bool {
        matches!(self, H1Error::Invalid(_))
    }
}
