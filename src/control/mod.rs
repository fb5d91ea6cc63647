//! The control plane: one controller task owns all deployment state (weights,
//! phase, live pool) and is the only writer of the routing table.
//!
//! Admin handlers, the config watcher and timers send it [`Command`]s; they
//! never write state themselves, so every change is validated, published,
//! and recorded in one place.

pub mod build;
pub mod commands;
pub mod controller;
pub mod cutover;
pub mod events;
#[cfg(feature = "fleet")]
pub mod fleet;
pub mod reload;
pub mod rollout;
pub mod rules;
pub mod state;
pub mod watch;

pub use commands::{Command, ReloadReport, RolloutAction, SwitchReport};
pub use controller::{
    Actor, CommandError, ControlView, Controller, ControllerHandle, Phase, Shared,
};
