//! Control plane: the controller task, the only writer of deployment state, and the rollback rules it applies.
pub mod rules;
