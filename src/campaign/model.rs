//! The campaign file: which plans run, how often, with which `--set` values, and what happens
//! between and after experiments. Read through the same spanned tree as plans, so every
//! problem points at its place in the file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::plan::Duration;

/// A campaign: plans × matrix × repeat, run one after another (or one per slot).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignFile {
    /// Campaign name (default: the file name).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Plan files or globs, relative to the campaign file; experiments run in this order
    /// (a glob's matches sorted by name).
    pub plans: Vec<String>,
    /// How many times each plan × matrix combination runs.
    #[serde(default = "one")]
    pub repeat: u32,
    /// `--set` values every experiment gets (`var: value`).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Vars to vary: every combination of the listed values runs (cartesian product), e.g.
    /// `{target: [ts-order-service, ts-preserve-service], load: ["50", "80"]}`.
    #[serde(default)]
    pub matrix: BTreeMap<String, Vec<String>>,
    /// Pause between two experiments on the same slot (lets the system settle).
    #[serde(default)]
    pub cooldown: Duration,
    /// What must hold before each experiment starts.
    #[serde(default)]
    pub before_each: BeforeEach,
    /// After a failed experiment: run the others (`continue`) or stop the campaign (`stop`).
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Clusters (kube contexts) or namespaces to run experiments on at once, one experiment per
    /// slot; default: one at a time on the cluster given on the command line.
    #[serde(default)]
    pub slots: Vec<Slot>,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// Preconditions checked before every experiment, in this order.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BeforeEach {
    /// Delete leftover Chaos Mesh / ChaosBlade objects (`ttplan chaos clean --all`) and wait
    /// until they are gone.
    #[serde(default = "yes")]
    pub clean_chaos: bool,
    /// Namespace to clean and check (default: the slot's, else `-n`, else every namespace for
    /// cleaning and the context's for readiness).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Wait until the namespace's pods are Ready.
    #[serde(default)]
    pub ready: Option<Ready>,
    /// Wait until the experiment's steady-state hypothesis (its plan's `hypothesis:` probes)
    /// holds: checked again every few seconds until every probe passes.
    #[serde(default)]
    pub hypothesis: bool,
    /// Limit for the whole `before_each`; past it the experiment fails without running.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

impl Default for BeforeEach {
    fn default() -> Self {
        Self {
            clean_chaos: true,
            namespace: None,
            ready: None,
            hypothesis: false,
            timeout: default_timeout(),
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(1200)
}

/// Readiness of a namespace's pods (as `wait-ready` judges it, without restarting anything).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ready {
    /// Only pods whose names start with one of these (all pods when empty).
    #[serde(default)]
    pub name_prefixes: Vec<String>,
    /// Fewer pods than this never counts as ready.
    #[serde(default = "one")]
    pub min_pods: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    #[default]
    Continue,
    Stop,
}

/// One place to run experiments.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    /// kubeconfig context (default: the command line's).
    #[serde(default)]
    pub context: Option<String>,
    /// Default namespace of the experiment's steps (default: the command line's `-n`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// kubeconfig file (default: the command line's, else `$KUBECONFIG`).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
}

impl Slot {
    /// A label for progress lines and the manifest.
    pub fn label(&self) -> String {
        match (&self.context, &self.namespace) {
            (Some(c), Some(n)) => format!("{c}/{n}"),
            (Some(c), None) => c.clone(),
            (None, Some(n)) => format!("ns {n}"),
            (None, None) => "default".into(),
        }
    }
}

/// The JSON schema of campaign files (`ttplan campaign schema`, committed as
/// `schemas/campaign.schema.json`).
pub fn campaign_schema_json() -> String {
    let mut schema = schemars::schema_for!(CampaignFile).to_value();
    if let Some(o) = schema.as_object_mut() {
        o.insert(
            "$id".into(),
            "https://github.com/ttplan/ttplan/schemas/campaign.schema.json".into(),
        );
        o.insert("title".into(), "ttplan campaign".into());
    }
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}
