//! The control plane: one controller task owns all deployment state (weights,
//! phase, live pool) and is the only writer of the routing table.
//!
//! Admin handlers, the config watcher and timers send it [`Command`]s; they
//! never write state themselves. Every change is a new [`StateDoc`]
//! ([`transition`]), committed to a [`store::StateStore`] (the state file;
//! etcd in fleet mode) and applied by one function ([`apply`]), so it is
//! validated, published and recorded in one place.
//!
//! # Layout
//!
//! - [`document`]: the state document and the phase derived from it.
//! - [`transition`]: every change as a pure function of the document.
//! - [`store`]: where documents are committed; [`store::file`] is the state file.
//! - [`controller`]: the task and its `select!` loop; [`apply`]: commit and apply.
//! - [`commands`]: what the admin API, the watcher and signals ask for.
//! - [`cutover`]: a write hold in flight; [`gate`]: what it waits for before the
//!   flip (a URL, or PostgreSQL replication caught up and the replica promoted);
//!   [`rollback`]: manual and automatic rollback.
//! - [`judge`]: the automatic-rollback rules; [`sequential`]: the sequential
//!   judge against the live pool; [`rollout`]: step arithmetic;
//!   [`mirror_guard`]: no move to a candidate that answers copies differently.
//! - [`reload`], [`config_watch`], [`build`]: the config file and the tables built from it.
//! - [`analysis`]: checks on business metrics, run off the loop, reported to it;
//!   [`notify`]: events POSTed to webhooks, off the loop, from the feed.
//! - [`explain`]: every rule and check now, for `GET /api/v1/explain`.
//! - [`events`]: the audit log; [`view`]: what status shows; [`feed`]: both
//!   as they change, for the dashboard's stream.
//! - [`maintenance`]: draining one endpoint for maintenance, and enabling it.
//! - `fleet` (feature `fleet`): the etcd layer; `store::etcd`: the fleet's
//!   store; `membership`: joining, the member value, the write fence.

pub mod analysis;
pub mod apply;
pub mod barrier;
pub mod build;
pub mod commands;
pub mod config_watch;
pub mod controller;
pub mod cutover;
pub mod document;
pub mod events;
pub mod explain;
pub mod feed;
#[cfg(feature = "fleet")]
pub mod fleet;
pub mod fleet_hold;
pub mod fleet_judge;
pub mod gate;
pub mod judge;
#[cfg(feature = "fleet")]
pub mod leader;
pub mod maintenance;
#[cfg(feature = "fleet")]
pub mod membership;
pub mod mirror_guard;
pub mod notify;
pub mod reload;
pub mod rollback;
pub mod rollout;
pub mod sequential;
pub mod store;
pub mod transition;
pub mod view;

pub use commands::{Command, ReloadReport, RolloutAction, SwitchReport};
pub use config_watch::spawn as watch_config;
pub use controller::{Actor, CommandError, Controller, ControllerHandle, Phase, Shared};
pub use document::StateDoc;
pub use view::ControlView;
