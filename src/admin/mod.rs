//! The admin API (SPEC.md section 3): JSON over HTTP under `/api/v1`, plus
//! `/healthz`, `/readyz` and `/metrics`; and the dashboard (SPEC.md section
//! 11): its page at `/` ([`dashboard`]), its live feed ([`stream`]) and its
//! traffic history ([`history`]).
//!
//! Owns request parsing, authentication and the error shape. Handlers read
//! published state directly and send every change to the controller as a
//! command; they never write deployment state themselves.

pub mod auth;
pub mod dashboard;
pub mod error;
pub mod history;
pub mod mirror;
pub mod routes;
pub mod serve;
pub mod status;
pub mod stream;

pub use routes::{router, AdminState};
