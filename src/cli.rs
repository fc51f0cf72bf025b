//! Command-line arguments (clap types only; behaviour lives in `commands`).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::engine::progress::ProgressMode;

/// Declarative fault-injection experiments and multi-modal dataset collection.
#[derive(Debug, Parser)]
#[command(name = "ttplan", version, about, propagate_version = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one experiment plan.
    Run(RunArgs),
    /// Check plans without running them; reports every problem with its location.
    Validate {
        /// Plan files (.yaml, .yml, .toml).
        #[arg(required = true)]
        plans: Vec<PathBuf>,
        #[command(flatten)]
        sets: SetArgs,
    },
    /// Show the resolved plan: steps by DAG layer with every rendered value.
    Plan {
        plan: PathBuf,
        #[command(flatten)]
        sets: SetArgs,
    },
    /// Print the step graph.
    Graph {
        plan: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
        #[command(flatten)]
        sets: SetArgs,
    },
    /// Print the JSON schema of plan files.
    Schema,
    /// Rewrite Kubernetes manifests to load the JaCoCo agent in tcpserver mode (idempotent).
    Instrument(InstrumentArgs),
    /// Find and remove chaos left in a cluster.
    #[command(subcommand)]
    Chaos(ChaosCommand),
    /// Work with dataset folders.
    #[command(subcommand)]
    Dataset(DatasetCommand),
}

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Validate a dataset folder against the published Train-Ticket layout; exits 1 on a
    /// violation.
    Check {
        /// The dataset root (the folder holding `metric_data/`, `log_data/`, …).
        dir: PathBuf,
        /// Check only this experiment folder name.
        #[arg(long = "exp", value_name = "NAME")]
        exp: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChaosCommand {
    /// List Chaos Mesh and ChaosBlade objects (all kinds) in a namespace or all namespaces.
    Ls {
        #[command(flatten)]
        kube: KubeArgs,
        /// Every namespace (the default unless -n is given).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Recover what a run left injected (`--run`), or remove every chaos object (`--all`).
    Clean {
        /// A run folder (`<out>/runs/<EXP_NAME>`): recover the faults its ledger lists as unrecovered.
        #[arg(
            long,
            value_name = "RUN_DIR",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        run: Option<PathBuf>,
        /// Delete every Chaos Mesh / ChaosBlade object in the namespace (-n) or everywhere.
        #[arg(long)]
        all: bool,
        /// Objects stuck on Chaos Mesh's records finalizer get the forced-cleanup annotation.
        #[arg(long)]
        force: bool,
        /// How long to wait for each object to disappear.
        #[arg(long, default_value = "2m")]
        timeout: humantime::Duration,
        #[command(flatten)]
        kube: KubeArgs,
    },
}

/// Cluster selection, as kubectl spells it.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeArgs {
    /// Path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
    /// Default namespace for steps that name none.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

impl KubeArgs {
    pub fn settings(&self) -> crate::kube::KubeSettings {
        crate::kube::KubeSettings {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct InstrumentArgs {
    /// Multi-document manifest file (`-` reads stdin).
    pub input: PathBuf,
    /// Write the result here (default: stdout).
    #[arg(short, long, conflicts_with = "in_place")]
    pub output: Option<PathBuf>,
    /// Rewrite INPUT itself (atomically).
    #[arg(long)]
    pub in_place: bool,
    /// Image that holds jacocoagent.jar; an init container copies it into each pod.
    #[arg(long)]
    pub agent_image: String,
    /// Path of the agent jar inside --agent-image.
    #[arg(long, default_value = crate::coverage::instrument::DEFAULT_AGENT_PATH)]
    pub agent_path: String,
    /// The agent's tcpserver port.
    #[arg(long, default_value_t = crate::coverage::instrument::DEFAULT_PORT)]
    pub port: u16,
    /// The agent's bind address.
    #[arg(long, default_value = "*")]
    pub address: String,
    /// `includes` of one service: `--includes ts-order-service=order.*` (repeatable).
    #[arg(long = "includes", value_name = "SERVICE=PATTERN")]
    pub includes: Vec<String>,
    /// Train-Ticket checkout: infer a service's `includes` from <ROOT>/<service>/src/main/java.
    #[arg(long, value_name = "ROOT")]
    pub source_root: Option<PathBuf>,
    /// `includes` when neither --includes nor --source-root says.
    #[arg(long, default_value = "*")]
    pub default_includes: String,
    /// The agent's `excludes`.
    #[arg(long)]
    pub excludes: Option<String>,
    /// Only these containers (repeatable; default: every container).
    #[arg(long = "container", value_name = "NAME")]
    pub containers: Vec<String>,
    /// Leave this workload alone (repeatable).
    #[arg(long = "skip", value_name = "NAME")]
    pub skip: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// Override a plan var: `--set key=value` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    pub plan: PathBuf,
    #[command(flatten)]
    pub sets: SetArgs,
    /// Dataset root: runs/, log_data/, metric_data/… are created under it.
    #[arg(long, default_value = "dataset")]
    pub out: PathBuf,
    /// Validate and show what would run, without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many steps run at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: u32,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}
