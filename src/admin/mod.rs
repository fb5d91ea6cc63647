//! The admin API (SPEC.md section 3): JSON over HTTP under `/api/v1`, plus
//! `/healthz`, `/readyz` and `/metrics`.
//!
//! Owns request parsing, authentication and the error shape. Handlers read
//! published state directly and send every change to the controller as a
//! command; they never write deployment state themselves.

pub mod auth;
pub mod error;
pub mod mirror;
pub mod routes;
pub mod serve;
pub mod status;

pub use routes::{router, AdminState};
