//! `switchyard ctl`'s command line: every subcommand and flag, with the
//! help text `--help`, the man page and the shell completions show.

use crate::config::PoolName;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use std::path::PathBuf;
use std::time::Duration;

/// What `ctl --help` says after the options: where the admin API and the
/// token come from, and the exit codes a script can branch on.
pub const AFTER_HELP: &str = "\
Where the admin API is: --admin, else admin.bind of the config given with -c,
else $SWITCHYARD_ADMIN, else http://127.0.0.1:9901. The token: --token, else
the config's admin.token_file (or $SWITCHYARD_ADMIN_TOKEN, as the proxy reads
it), else $SWITCHYARD_ADMIN_TOKEN.

Exit codes:
  0  done
  1  any other failure (an answer that is not the admin API's, output failed)
  2  invalid input: a bad argument, a bad -c file, or the API answered 400,
     404 or 422
  3  refused (409): a guardrail, the current phase, or a stale if_generation
  4  unauthorized (401): missing or wrong token
  5  unreachable: no admin API at that address, no answer in time, or in
     fleet mode its etcd is out of reach (503)
  6  with --wait: the rollout or switch was rolled back or aborted";

/// Options every ctl subcommand takes.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct CtlArgs {
    /// Admin API base URL [default: from -c, else $SWITCHYARD_ADMIN, else
    /// http://127.0.0.1:9901].
    #[arg(long, global = true, value_name = "URL")]
    pub admin: Option<String>,
    /// Take the admin address and token from this switchyard config file
    /// (admin.bind, admin.token_file).
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Bearer token for the admin API [default: from -c, else
    /// $SWITCHYARD_ADMIN_TOKEN].
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Print the API's JSON answer instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: CtlCmd,
}

/// `blue` or `green`, listed in `--help` and completed by the shells.
fn pool() -> impl TypedValueParser<Value = PoolName> {
    PossibleValuesParser::new(["blue", "green"]).map(|s| match s.as_str() {
        "green" => PoolName::Green,
        _ => PoolName::Blue,
    })
}

/// A duration such as `30s`, `500ms` or `1h`, checked here as the config does.
fn duration(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration(text).map_err(|e| e.to_string())
}

/// `--wait` and its bound, for the commands that can block until done.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Block until the change is done (the bake over), for CI pipelines;
    /// exit 6 if it is rolled back or aborted.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up (exit 1) after this long, e.g. 15m.
    #[arg(long, value_name = "DURATION", value_parser = duration, requires = "wait")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, clap::Subcommand)]
pub enum CtlCmd {
    /// Phase, weights, rollout, health and live figures.
    Status,
    /// A live view of status, refreshed every second, with countdowns
    /// (Ctrl-C ends it; it reconnects when the proxy restarts).
    Watch,
    /// Fleet mode: this member, the leader and every member's figures.
    Fleet,
    /// Set a manual split, e.g. `weights 90 10` (pauses a running rollout).
    Weights {
        /// Blue's percentage, 0 to 100.
        blue: f64,
        /// Green's percentage; blue + green must be 100.
        green: f64,
        /// Give traffic to a rollback-locked pool all the same.
        #[arg(long)]
        force: bool,
    },
    /// Instant switch of all traffic to a pool (then it bakes).
    Switch {
        /// The pool to switch to.
        #[arg(value_parser = pool(), value_name = "TO")]
        to: PoolName,
        /// Switch even if the target is unhealthy or rollback-locked.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Step-by-step rollouts.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// Everything back to the previous live pool, now; locks the candidate.
    Rollback {
        /// Why, for the event log (recorded as `manual: REASON`).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Clear the rollback lock.
    Rearm,
    /// The audit log, newest first.
    Events {
        /// How many of the newest events.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Every rollback rule and check now: value, threshold, verdict, and
    /// what it waits for.
    Explain,
    /// Reload the config file now.
    Reload,
    /// Maintenance of one endpoint: drain it, or enable it again.
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Copies of live requests to the candidate, answers compared.
    #[command(subcommand)]
    Mirror(MirrorCmd),
}

#[derive(Debug, clap::Subcommand)]
pub enum MirrorCmd {
    /// The last mismatches, newest first: each request line and every
    /// differing field with both values; then the fields learned as noise.
    Diffs {
        /// How many of the newest mismatches.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum RolloutCmd {
    /// Start a rollout to a pool, step by step, with automatic rollback armed.
    Start {
        /// The pool to roll out to.
        #[arg(value_parser = pool(), value_name = "TO")]
        to: PoolName,
        /// Candidate percentage at each step, e.g. 10,25,50,100
        /// [default: rollout.steps].
        #[arg(long, value_delimiter = ',', value_name = "PERCENT,...")]
        steps: Option<Vec<f64>>,
        /// Time between steps, e.g. 30s [default: rollout.step_interval].
        #[arg(long = "step-interval", alias = "interval", value_name = "DURATION")]
        step_interval: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// The rollout in progress (or the bake after it).
    Status {
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop at the current step.
    Pause,
    /// Go on from the current step.
    Resume,
    /// Jump to the next step now (or end the bake).
    Promote,
    /// Roll back: everything to the live pool, the candidate locked.
    Abort,
}

#[derive(Debug, clap::Subcommand)]
pub enum EndpointCmd {
    /// Take no new requests; those in flight finish. Status shows `draining`.
    Drain {
        /// The endpoint as the config writes it, e.g. 127.0.0.1:8001.
        address: String,
    },
    /// Take requests again after a drain.
    Enable {
        /// The endpoint as the config writes it, e.g. 127.0.0.1:8001.
        address: String,
    },
}
