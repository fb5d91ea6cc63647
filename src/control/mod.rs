//! The control plane: one controller task owns all deployment state (weights,
//! phase, live pool) and is the only writer of the routing table.
//!
//! Admin handlers, the config watcher and timers send it [`Command`]s; they
//! never write state themselves, so every change is validated, published,
//! and recorded in one place.

pub mod build;
pub mod controller;
pub mod events;
pub mod rules;

pub use controller::{Command, CommandError, ControlView, Controller, Phase, Shared};
