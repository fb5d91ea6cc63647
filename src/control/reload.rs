//! Applying a new config file: parse, validate, build, swap. Any failure
//! keeps the old table and config; listeners are never rebound by a reload.
//!
//! The config is not deployment state: a reload swaps the table under the
//! same generation, and commits a document only when a changed
//! `traffic.initial` moves the weights.

use crate::config::{self, PoolName};
use crate::control::build::{build_table, removed_endpoints};
use crate::control::commands::ReloadReport;
use crate::control::controller::{Actor, CommandError, Controller};
use crate::control::events::{Event, EventKind};
use crate::control::view::ConfigErrorView;
use crate::routing::Weights;
use crate::upstream::health::CheckSettings;
use std::sync::Arc;

impl Controller {
    /// The sections applied only at start that `new` would change: compared
    /// with the config the process started with, not with the previous
    /// file, so the note stays until a restart (or until the file matches
    /// what runs again). `admin.token_file` and `admin.metrics_public` are
    /// not among them: both are read per request and follow reloads.
    fn restart_only_changes(&self, new: &config::Config) -> Vec<&'static str> {
        let run = &self.started;
        let mut restart = Vec::new();
        if new.listeners != run.listeners {
            restart.push("listeners");
        }
        if new.admin.bind != run.admin.bind {
            restart.push("admin.bind");
        }
        if new.rollback.window > self.shared.runtimes[0].stats.capacity() {
            restart.push("rollback.window (longer than the statistics kept)");
        }
        if new.limits != run.limits || new.timeouts.client_header != run.timeouts.client_header {
            restart.push("limits/timeouts.client_header");
        }
        if new.audit_log != run.audit_log || new.state_file != run.state_file {
            restart.push("audit_log/state_file");
        }
        if new.log.format != run.log.format {
            restart.push("log.format");
        }
        restart
    }

    /// Read the admin token again (`admin.token_file`, else the
    /// environment) and put it in force when it differs: rotating a
    /// Kubernetes Secret changes the file's content, not the config.
    /// Whether it was replaced; the token itself is never logged.
    fn reload_admin_token(&mut self, new: &config::Config) -> bool {
        let Some(slot) = &self.admin_token else {
            return false;
        };
        let fresh = match crate::config::token::load_token(new.admin.token_file.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                // Validation read the file a moment ago: this is a race
                // with whoever writes it. The old token stays in force.
                tracing::error!(error = %e, "admin token not reloaded; the old one stays in force");
                return false;
            }
        };
        if slot.load().as_deref().map(String::as_str) == fresh.as_deref() {
            return false;
        }
        slot.store(fresh.map(Arc::new));
        tracing::info!("admin token replaced");
        true
    }

    /// A file that cannot be applied: the old config keeps serving; the
    /// errors are logged, counted, kept for status and recorded as an event.
    fn reject(&mut self, actor: Actor, diags: Vec<config::Diagnostic>) -> CommandError {
        for d in &diags {
            tracing::error!(file = %d.file, line = d.line, column = d.column, "config rejected: {}", d.message);
        }
        self.config_error = diags.first().map(|d| ConfigErrorView {
            message: d.message.clone(),
            line: d.line,
            column: d.column,
        });
        self.shared.metrics.config_reload(false);
        self.shared.events.record(
            Event::new(EventKind::ConfigRejected, actor).reason(
                diags
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        );
        self.publish_view();
        CommandError::ConfigInvalid(diags)
    }

    pub(crate) async fn reload(&mut self, actor: Actor) -> Result<ReloadReport, CommandError> {
        let Some(path) = self.config_path.clone() else {
            return Err(CommandError::Conflict(
                "started from an embedded config: there is no file to reload".into(),
            ));
        };
        let text = config::read(&path);
        self.shared
            .config_read
            .store(text.as_ref().ok().map(|t| Arc::new(t.clone().into_bytes())));
        let new = match text.and_then(|t| config::parse_file(&t, &path)) {
            Ok(c) => c,
            Err(e) => return Err(self.reject(actor, e.diagnostics())),
        };
        let old = self.shared.config.load_full();
        let prev = self.shared.table.load_full();
        let next = match build_table(
            &new,
            Some(&prev),
            &self.shared.runtimes,
            0,
            self.doc.weights,
            self.doc.live,
        ) {
            Ok(t) => t,
            // Validation tries what building needs (CA files included), so
            // this is a file changed in between: refused all the same.
            Err(e) => {
                let d = config::Diagnostic {
                    file: path.display().to_string(),
                    line: 0,
                    column: 0,
                    message: e.to_string(),
                };
                return Err(self.reject(actor, vec![d]));
            }
        };
        let removed = removed_endpoints(&prev, &next);
        let added: Vec<String> = PoolName::ALL
            .iter()
            .flat_map(|&p| next.pool(p).endpoints.iter())
            .filter(|e| {
                !prev
                    .pool(e.pool)
                    .endpoints
                    .iter()
                    .any(|old| Arc::ptr_eq(old, e))
            })
            .map(|e| format!("{}/{}", e.pool, e.address))
            .collect();
        let restart = self.restart_only_changes(&new);
        let token_replaced = self.reload_admin_token(&new);
        if new.log.level != old.log.level || new.log.access_log != old.log.access_log {
            match crate::telemetry::logging::set_level(&new.log.level, new.log.access_log) {
                Ok(()) => tracing::info!(level = %new.log.level, "log level changed"),
                Err(e) => tracing::error!(error = %e, "log level not changed"),
            }
        }
        self.restart_needed = (!restart.is_empty()).then(|| {
            format!(
                "changed but applied only at restart: {}",
                restart.join(", ")
            )
        });
        if let Some(note) = &self.restart_needed {
            tracing::warn!("{note}");
        }
        // A change of traffic.initial that would give a rollback-locked
        // pool traffic is not applied; the rest of the file is.
        let initial = (new.traffic.initial != old.traffic.initial)
            .then(|| Weights::from_config(&new.traffic.initial));
        let weights_not_applied = initial.and_then(|w| {
            let refused = crate::control::transition::check_locked_weights(&self.doc, w).err()?;
            let note = format!("traffic.initial not applied: {refused}");
            tracing::warn!("{note}");
            Some(note)
        });
        let config_changed = *old != new;
        let changed = config_changed || token_replaced;
        self.judge.set_config(&new.rollback);
        self.analysis.configure(&new.analysis.checks);
        self.shared.config.store(Arc::new(new));
        let error_cleared = self.config_error.take().is_some();
        self.loaded_at = crate::clock::rfc3339(crate::clock::unix_ms());
        // Nothing a generation guards has changed: a script holding
        // `if_generation` must not be refused because config management
        // sent a SIGHUP, or because a pool gained an endpoint.
        self.replace_table(next);
        self.publish_view();
        let cfg = self.shared.config.load_full();
        if let Some(health) = self.health.as_mut() {
            match CheckSettings::from_config(&cfg.health_check) {
                Ok(settings) => {
                    let r = health.reconcile(self.shared.table.load().endpoints(), &settings);
                    tracing::debug!(?r, "health checks follow the new table");
                }
                Err(e) => tracing::error!(error = %e, "health checks keep their old settings"),
            }
        }
        for ep in &removed {
            self.shared.metrics.remove_endpoint(ep.pool, &ep.address);
        }
        crate::routing::drain::drain_removed(removed.clone(), cfg.drain.timeout);
        self.sync_endpoint_gauges();
        self.shared.metrics.config_reload(true);
        let removed_names: Vec<String> = removed
            .iter()
            .map(|e| format!("{}/{}", e.pool, e.address))
            .collect();
        // The watcher may ask again for what a reload already read; that
        // changes nothing and is not worth an event. Asked by a person (API,
        // SIGHUP), or clearing an error, it is.
        let worth_an_event = changed || error_cleared || actor != Actor::Config;
        if worth_an_event {
            self.shared.events.record(
                Event::new(EventKind::ConfigReloaded, actor)
                    .to(serde_json::json!({
                        "path": path,
                        "changed": changed,
                        "endpoints_added": added,
                        "endpoints_removed": removed_names,
                    }))
                    .reason({
                        let mut notes: Vec<String> = self.restart_needed.iter().cloned().collect();
                        if token_replaced {
                            notes.push("admin token replaced".into());
                        }
                        notes.extend(weights_not_applied.iter().cloned());
                        if notes.is_empty() {
                            "applied".into()
                        } else {
                            notes.join("; ")
                        }
                    }),
            );
        }
        if let Some(w) = initial.filter(|_| weights_not_applied.is_none()) {
            if let Err(e) = self.set_weights(w, false, None, Actor::Config).await {
                tracing::warn!(error = %e, "traffic.initial changed but could not be applied now");
            }
        }
        Ok(ReloadReport {
            generation: self.doc.generation,
            changed,
            endpoints_added: added,
            endpoints_removed: removed_names,
            restart_needed: self.restart_needed.clone(),
            weights_not_applied,
        })
    }
}
