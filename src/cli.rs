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
    /// Run the plan a manifest recorded again, with the same values, under a new exp name.
    Rerun(RerunArgs),
    /// Run many experiments: plans × matrix × repeat, resumable.
    #[command(subcommand)]
    Campaign(CampaignCommand),
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
    /// A simulated Train-Ticket environment (Kubernetes API with Chaos Mesh and ChaosBlade,
    /// SkyWalking, the system's HTTP API) on loopback, to try plans without a cluster.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Write an HTML page for a run folder (`runs/<EXP>`), or an index page of the runs in a
    /// campaign or output folder.
    Report {
        /// A run folder, or a folder holding run folders (or `runs/`).
        dir: PathBuf,
        /// Where to write the page (default: DIR/report.html for a run, DIR/index.html otherwise).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
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
    /// How long one API request may wait for the server's answer (default 60s; connecting
    /// gives up after 10s).
    #[arg(long, value_name = "DURATION")]
    pub request_timeout: Option<humantime::Duration>,
}

impl KubeArgs {
    pub fn settings(&self) -> crate::kube::KubeSettings {
        crate::kube::KubeSettings {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: self.namespace.clone(),
            request_timeout: self.request_timeout.map(Into::into),
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
    /// No Train-Ticket defaults (known services' own packages as `includes`, non-Java services
    /// skipped): `--default-includes` everywhere.
    #[arg(long)]
    pub no_train_ticket_defaults: bool,
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
    /// Do not write runs/<EXP>/report.html at the end of the run.
    #[arg(long)]
    pub no_report: bool,
    /// Continue the run in RUN_DIR (`<out>/runs/<EXP_NAME>`): steps that succeeded there are
    /// kept, the rest run; faults are always re-injected whole.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Run only these steps (and the `always` steps after them).
    #[arg(long, value_name = "STEP", num_args = 1.., conflicts_with = "from")]
    pub only: Vec<String>,
    /// Run this step and every step after it.
    #[arg(long, value_name = "STEP")]
    pub from: Option<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Run against a simulated Train-Ticket environment started for this run (no cluster
    /// needed); the manifest records it under `sandbox`.
    #[arg(long, conflicts_with = "kubeconfig")]
    pub sandbox: bool,
    /// The sandbox simulation's seed: the same seed and plan give the same simulated data.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "sandbox")]
    pub seed: u64,
}

/// `ttplan sandbox …`
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Start the environment in the foreground and print its kubeconfig and endpoints;
    /// Ctrl-C stops it.
    Up {
        /// Also write the endpoints as `NAME=value` lines (a shell `export` file) to this file.
        #[arg(long, value_name = "FILE")]
        env_file: Option<PathBuf>,
        /// Write the Kubernetes API server's port to this file once it listens.
        #[arg(long, value_name = "FILE")]
        port_file: Option<PathBuf>,
        /// Folder for the kubeconfig (default: a temporary folder removed on exit).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The simulation's seed: the same seed and runs give the same simulated data.
        #[arg(long, value_name = "N", default_value_t = 0)]
        seed: u64,
    },
}

impl RunArgs {
    pub fn config(&self) -> crate::engine::launch::RunConfig {
        crate::engine::launch::RunConfig {
            plan: self.plan.clone(),
            sets: self.sets.sets.clone(),
            out: self.out.clone(),
            max_parallel: self.max_parallel,
            progress: self.progress,
            kube: self.kube.settings(),
            resume: self.resume.clone(),
            only: self.only.clone(),
            from: self.from.clone(),
            sandbox: None,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct RerunArgs {
    /// An `experiment_manifest.json`.
    pub manifest: PathBuf,
    /// The new run's exp name (default: the recorded one + `_rerun_<UTC now>`).
    #[arg(long)]
    pub exp_name: Option<String>,
    /// Dataset root for the new run.
    #[arg(long, default_value = "dataset")]
    pub out: PathBuf,
    /// Show the plan that would run, without running it.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many steps run at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: u32,
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    #[command(flatten)]
    pub kube: KubeArgs,
}

impl RerunArgs {
    pub fn config(&self) -> crate::engine::launch::RunConfig {
        crate::engine::launch::RunConfig {
            plan: self.manifest.clone(),
            sets: Vec::new(),
            out: self.out.clone(),
            max_parallel: self.max_parallel,
            progress: self.progress,
            kube: self.kube.settings(),
            resume: None,
            only: Vec::new(),
            from: None,
            sandbox: None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Validate every plan of a campaign, then run its experiments one after another (or one
    /// per slot); `--resume` continues an earlier campaign in the same --out.
    Run(CampaignRunArgs),
    /// Check a campaign file and every plan it names, without running anything.
    Validate { file: PathBuf },
    /// Print the JSON schema of campaign files.
    Schema,
}

#[derive(Debug, clap::Args)]
pub struct CampaignRunArgs {
    /// Campaign file (.yaml, .yml, .toml).
    pub file: PathBuf,
    /// Dataset root: every experiment's folders and `campaign_manifest.json` go here.
    #[arg(long, default_value = "dataset")]
    pub out: PathBuf,
    /// Skip experiments that succeeded in `<out>/campaign_manifest.json`; recover and rerun
    /// failed or interrupted ones.
    #[arg(long)]
    pub resume: bool,
    /// At most this many steps of one experiment run at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: u32,
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Run every experiment against one simulated Train-Ticket started for the whole campaign
    /// (as `run --sandbox`; each manifest records it).
    #[arg(long)]
    pub sandbox: bool,
    /// The sandbox simulation's seed (with `--sandbox`).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "sandbox")]
    pub seed: u64,
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}
