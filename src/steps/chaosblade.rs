//! `chaosblade`: JVM (code-level) faults with ChaosBlade, either through the `blade` CLI
//! (`blade create k8s container-jvm <action> …`, uid from its JSON answer, `blade destroy <uid>`)
//! or by creating the operator's cluster-scoped `ChaosBlade` object. The target pod is a Ready
//! pod of the service, picked by label as the dataset scripts did.

use std::path::PathBuf;

use ::kube::api::DynamicObject;
use futures_util::future::BoxFuture;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::kube::chaos::{chaosblade_injection, chaosblade_resource, Injection, CHAOSBLADE_API};
use crate::kube::cleanup::delete_chaos;
use crate::kube::names::{dns_name, label_value};
use crate::kube::pods::PodQuery;
use crate::kube::{poll_interval, Kube, KubeSettings};
use crate::plan::Duration;
use crate::steps::api::fault_details::{
    ChaosBladeInjection, ChaosBladeObject, ChaosBladeParams, ChaosBladeTarget, FaultParams,
    InjectionDetails, RecoveryReport,
};
use crate::steps::api::faults::{FaultRecord, RecoverCtx};

/// How the fault is created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BladeMode {
    /// Run the `blade` CLI.
    #[default]
    Cli,
    /// Create a `chaosblade.io/v1alpha1` ChaosBlade object for the operator.
    Operator,
}

/// Injects a ChaosBlade fault into a service's JVM.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChaosBladeConfig {
    #[serde(default)]
    pub mode: BladeMode,
    /// ChaosBlade target; `jvm` means `k8s container-jvm`.
    #[serde(default = "jvm")]
    pub target: String,
    /// The action: `return`, `throwCustomException`, `delay`, …
    pub action: String,
    /// The action's flags without dashes: `classname`, `methodname`, `value`, `exception`,
    /// `exception-message`, `time`, …
    #[serde(default)]
    pub flags: IndexMap<String, String>,
    /// Service whose pod to hit: the first Ready pod labelled `<service_label>=<service>`.
    pub service: String,
    #[serde(default = "app")]
    pub service_label: String,
    /// Container name; default: the service name.
    #[serde(default)]
    pub container: Option<String>,
    /// Namespace; default `-n`, else the context's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// JVM process name inside the container.
    #[serde(default = "java")]
    pub process: String,
    /// The `blade` executable (CLI mode).
    #[serde(default = "blade")]
    pub blade: String,
    /// How long the fault may take to be reported running.
    #[serde(default = "two_minutes")]
    pub inject_timeout: Duration,
    /// How long recovery waits.
    #[serde(default = "two_minutes")]
    pub recover_timeout: Duration,
}

fn jvm() -> String {
    "jvm".into()
}
fn app() -> String {
    "app".into()
}
fn java() -> String {
    "java".into()
}
fn blade() -> String {
    "blade".into()
}
fn two_minutes() -> Duration {
    Duration::from_secs(120)
}

#[derive(Debug, Serialize, Deserialize)]
struct Recovery {
    mode: BladeMode,
    blade: String,
    kubeconfig: Option<PathBuf>,
    /// The ChaosBlade object's name, known before creation in both modes: operator mode names
    /// it; CLI mode hands `blade create --uid` a uid and the CLI names the object after it
    /// (chaosblade `exec/kubernetes/executor.go`, `convertExpModelToChaosBladeObject`), so an
    /// interrupted `blade create` leaves an experiment recovery can still find. Ledgers written
    /// before that have no name in CLI mode: the uid is then in the record's details.
    name: Option<String>,
    timeout: Duration,
    kube: KubeSettings,
}

impl StepConfig for ChaosBladeConfig {
    const KIND: &'static str = "chaosblade";
    const ABOUT: &'static str =
        "injects a ChaosBlade JVM fault (blade CLI or operator CRD) into a Ready pod of a service";
    const RECOVER: Option<super::RecoverFn> = Some(recover);
}

fn blade_target(t: &str) -> String {
    if t == "jvm" {
        "container-jvm".into()
    } else {
        t.to_string()
    }
}

/// A `blade` answer that is not a success: its response code (chaosblade-spec-go
/// `spec/response.go` `Response.Code`; absent when the answer was not JSON) and error text.
#[derive(Debug, Clone, PartialEq)]
pub struct BladeFailure {
    pub code: Option<i64>,
    pub message: String,
}

impl std::fmt::Display for BladeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "blade failed (code {code}): {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl BladeFailure {
    /// `blade destroy` of an experiment blade has no record of: chaosblade-spec-go
    /// `DataNotFound` (67002, `cli/cmd/destroy.go` when the uid is not in its database);
    /// blade before 1.0 answered 47000 "data not found" for the same case, a code that now
    /// means `ParameterInvalid`, so for 47000 the old message is required too.
    pub fn is_data_not_found(&self) -> bool {
        match self.code {
            Some(67002) => true,
            Some(47000) => self.message.starts_with("data not found"),
            _ => false,
        }
    }
}

/// `{"code":200,"success":true,"result":…}` → the result; anything else → its code and error.
pub fn parse_blade_answer(stdout: &str, stderr: &str) -> Result<Value, BladeFailure> {
    let text = if stdout.trim().is_empty() {
        stderr
    } else {
        stdout
    };
    let v: Value = serde_json::from_str(text.trim()).map_err(|_| BladeFailure {
        code: None,
        message: format!("blade answered something that is not JSON: {}", text.trim()),
    })?;
    if v.get("success").and_then(Value::as_bool) == Some(true) {
        return Ok(v.get("result").cloned().unwrap_or(Value::Null));
    }
    let message = v
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            v.pointer("/result/error")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| v.to_string());
    Err(BladeFailure {
        // A JSON answer without a code still failed; -1 keeps "(code …)" in the message.
        code: Some(v.get("code").and_then(Value::as_i64).unwrap_or(-1)),
        message,
    })
}

async fn ready_pod(kube: &Kube, ns: &str, label: &str, service: &str) -> Result<String, StepError> {
    let selector = format!("{label}={service}");
    let pods = PodQuery {
        namespace: ns,
        selector: Some(&selector),
        name_prefixes: &[],
    }
    .pods(kube)
    .await?;
    let mut ready: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| crate::kube::pod_is_ready(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    ready.sort();
    ready.into_iter().next().ok_or_else(|| {
        StepError::failed(format!("no Ready pod labelled {label}={service} in {ns}"))
    })
}

/// The kubeconfig `blade` is given, absolute: recovery may run from another directory.
fn kubeconfig_path(settings: &KubeSettings) -> Option<PathBuf> {
    let path = settings.kubeconfig.clone().or_else(|| {
        // `blade --kubeconfig` takes one file: the first of a KUBECONFIG list.
        std::env::var_os("KUBECONFIG")
            .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    })?;
    Some(std::path::absolute(&path).unwrap_or(path))
}

#[async_trait::async_trait]
impl Step for ChaosBladeConfig {
    fn needs_cluster(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let kube = ctx.kube().await?;
        let at = self.placement(ctx, kube).await?;
        // In the ledger before `blade create` runs: an interrupted create is still recovered.
        let recovery = self.recovery(ctx, &at);
        let fault = ctx
            .register_fault(
                Self::KIND,
                serde_json::to_value(&recovery).map_err(StepError::failed)?,
                self.params(&at),
            )
            .await?;
        ctx.progress(format!(
            "injecting {} {} into {}/{}",
            self.target, self.action, at.namespace, at.pod
        ));
        let created = match self.mode {
            BladeMode::Cli => {
                self.create_cli(ctx, kube, &at, recovery.kubeconfig.as_deref())
                    .await?
            }
            BladeMode::Operator => self.create_operator(ctx, kube, &at).await?,
        };
        let uid = created.uid.clone();
        let details = created.details(at.target(&self.service));
        fault
            .injected(InjectionDetails::ChaosBlade(details))
            .await?;
        Ok(StepOutputs::default()
            .value("uid", uid)
            .value("pod", at.pod)
            .value("namespace", at.namespace))
    }
}

/// Where the fault goes, resolved when the step starts.
struct Placement {
    namespace: String,
    pod: String,
    container: String,
    /// The ChaosBlade object's name, known before creation (see [`Recovery::name`]).
    object_name: String,
}

impl Placement {
    /// The target as the labels name it before the operator reports the pods it injected.
    fn target(&self, service: &str) -> ChaosBladeTarget {
        ChaosBladeTarget {
            namespace: self.namespace.clone(),
            service: service.to_string(),
            pods: vec![format!("{}/{}", self.namespace, self.pod)],
            container: self.container.clone(),
        }
    }
}

/// The experiment once created: its uid, its object's name, and the operator's view of it.
struct Created {
    uid: String,
    name: String,
    /// The ChaosBlade object as last read, when it could be read.
    seen: Option<DynamicObject>,
}

impl Created {
    /// What the labels keep: with the object Running, the pods the operator reports injected
    /// and the time it wrote that status.
    fn details(self, mut target: ChaosBladeTarget) -> ChaosBladeInjection {
        let mut controller_injected_at = None;
        let mut controller_status = None;
        if let Some(obj) = self.seen.as_ref().filter(|o| blade_phase(o) == "Running") {
            let pods = blade_pods(obj);
            if !pods.is_empty() {
                target.pods = pods;
            }
            controller_injected_at = status_written_at(obj);
            controller_status = Some(obj.data.get("status").cloned().unwrap_or(Value::Null));
        }
        ChaosBladeInjection {
            object: ChaosBladeObject {
                api_version: CHAOSBLADE_API.into(),
                kind: "ChaosBlade".into(),
                name: self.name,
                uid: self.uid.clone(),
            },
            blade_uid: self.uid,
            controller_injected_at,
            controller_status,
            target,
        }
    }
}

impl ChaosBladeConfig {
    /// The namespace, container and Ready pod to hit, and the name the object will have.
    async fn placement(&self, ctx: &StepCtx, kube: &Kube) -> Result<Placement, StepError> {
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| kube.namespace.clone());
        let container = self
            .container
            .clone()
            .unwrap_or_else(|| self.service.clone());
        let pod = ready_pod(kube, &namespace, &self.service_label, &self.service).await?;
        let object_name = match self.mode {
            BladeMode::Operator => dns_name(&format!("{}-{}", ctx.exp_name(), ctx.step_name())),
            // What `blade` generates itself: 16 hex digits (chaosblade `util.GenerateUid`).
            BladeMode::Cli => random_uid(),
        };
        Ok(Placement {
            namespace,
            pod,
            container,
            object_name,
        })
    }

    /// What the ledger keeps to destroy the experiment without the plan.
    fn recovery(&self, ctx: &StepCtx, at: &Placement) -> Recovery {
        Recovery {
            mode: self.mode,
            blade: self.blade.clone(),
            kubeconfig: kubeconfig_path(ctx.kube_settings()),
            name: Some(at.object_name.clone()),
            timeout: self.recover_timeout,
            kube: ctx.kube_settings().clone(),
        }
    }

    fn params(&self, at: &Placement) -> FaultParams {
        FaultParams::ChaosBlade(ChaosBladeParams {
            kind: format!("chaosblade/{}/{}", self.target, self.action),
            target: self.target.clone(),
            action: self.action.clone(),
            flags: self.flags.clone(),
            service: self.service.clone(),
            container: at.container.clone(),
            process: self.process.clone(),
        })
    }

    /// `blade create k8s …`: the experiment's uid from its answer, and the operator's view of
    /// what it created.
    async fn create_cli(
        &self,
        ctx: &StepCtx,
        kube: &Kube,
        at: &Placement,
        kubeconfig: Option<&std::path::Path>,
    ) -> Result<Created, StepError> {
        let args = self.create_args(at, kubeconfig);
        let mut cmd = tokio::process::Command::new(&self.blade);
        cmd.args(&args);
        let out = tokio::select! {
            r = tokio::time::timeout(self.inject_timeout.get(), crate::child::output(&mut cmd, ctx.child_groups())) => match r {
                Ok(o) => o.map_err(|e| StepError::failed(format!("cannot run `{}`: {e}", self.blade)))?,
                Err(_) => return Err(StepError::failed(format!("`{} create` did not answer within {}", self.blade, self.inject_timeout))),
            },
            () = ctx.cancel_token().cancelled() => return Err(StepError::Cancelled),
        };
        let log = format!(
            "--- {} {}\n{}{}",
            self.blade,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(ctx.log_path())
            .and_then(|mut f| std::io::Write::write_all(&mut f, log.as_bytes()));
        let result = parse_blade_answer(
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
        )
        .map_err(StepError::failed)?;
        // `blade create` answers the experiment uid as its result.
        let uid = result.as_str().map(str::to_string).ok_or_else(|| {
            StepError::failed(format!("blade create answered no experiment uid: {result}"))
        })?;
        // The operator's own view of what `blade` created, for the labels.
        let seen = kube
            .get_opt(&chaosblade_resource(), None, &uid)
            .await
            .ok()
            .flatten();
        Ok(Created {
            name: uid.clone(),
            uid,
            seen,
        })
    }

    /// The arguments of `blade create k8s <target> <action> …`.
    fn create_args(&self, at: &Placement, kubeconfig: Option<&std::path::Path>) -> Vec<String> {
        let mut args = vec![
            "create".to_string(),
            "k8s".into(),
            blade_target(&self.target),
            self.action.clone(),
        ];
        for (k, v) in &self.flags {
            args.push(format!("--{k}"));
            args.push(v.clone());
        }
        args.extend([
            "--names".into(),
            at.pod.clone(),
            "--container-names".into(),
            at.container.clone(),
            "--process".into(),
            self.process.clone(),
            "--namespace".into(),
            at.namespace.clone(),
            // Named in advance so that an interrupted create can still be destroyed.
            "--uid".into(),
            at.object_name.clone(),
            // The CLI polls the operator this long (its default is 20s).
            "--waiting-time".into(),
            format!("{}s", self.inject_timeout.get().as_secs().max(1)),
        ]);
        if let Some(k) = kubeconfig {
            args.push("--kubeconfig".into());
            args.push(k.display().to_string());
        }
        args
    }

    /// Creates the `ChaosBlade` object and waits until the operator reports it Running.
    async fn create_operator(
        &self,
        ctx: &StepCtx,
        kube: &Kube,
        at: &Placement,
    ) -> Result<Created, StepError> {
        let ar = chaosblade_resource();
        kube.ensure_resource("ChaosBlade", CHAOSBLADE_API, "ChaosBlade", "chaosblades")
            .await
            .map_err(|e| StepError::failed(e.to_string()))?;
        let obj = self.operator_object(ctx, at)?;
        kube.apply(&ar, None, &obj)
            .await
            .map_err(|e| StepError::failed(e.to_string()))?;
        let obj = self.wait_running(ctx, kube, &at.object_name).await?;
        Ok(Created {
            uid: obj.metadata.uid.clone().unwrap_or_default(),
            name: at.object_name.clone(),
            seen: Some(obj),
        })
    }

    /// The cluster-scoped `ChaosBlade` object for the operator.
    fn operator_object(&self, ctx: &StepCtx, at: &Placement) -> Result<DynamicObject, StepError> {
        let mut matchers = vec![
            json!({"name": "names", "value": [at.pod]}),
            json!({"name": "namespace", "value": [at.namespace]}),
            json!({"name": "container-names", "value": [at.container]}),
            json!({"name": "process", "value": [self.process]}),
        ];
        for (k, v) in &self.flags {
            matchers.push(json!({"name": k, "value": [v]}));
        }
        serde_json::from_value(json!({
            "apiVersion": CHAOSBLADE_API, "kind": "ChaosBlade",
            "metadata": {"name": at.object_name, "labels": {"ttplan.io/step": label_value(ctx.step_name())}},
            "spec": {"experiments": [{
                "scope": "container", "target": self.target, "action": self.action,
                "desc": format!("ttplan {} {}", ctx.exp_name(), ctx.step_name()),
                "matchers": matchers,
            }]},
        }))
        .map_err(StepError::failed)
    }

    /// Polls the object `name` until the operator reports it Running (or failed).
    async fn wait_running(
        &self,
        ctx: &StepCtx,
        kube: &Kube,
        name: &str,
    ) -> Result<DynamicObject, StepError> {
        let ar = chaosblade_resource();
        let deadline = tokio::time::Instant::now() + self.inject_timeout.get();
        loop {
            let cur = kube
                .get_opt(&ar, None, name)
                .await
                .map_err(|e| StepError::failed(e.to_string()))?
                .ok_or_else(|| StepError::failed(format!("ChaosBlade {name} disappeared")))?;
            match chaosblade_injection(&cur) {
                Injection::Injected => return Ok(cur),
                Injection::Failed(e) => {
                    return Err(StepError::failed(format!("ChaosBlade {name} failed: {e}")))
                }
                Injection::Pending => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StepError::failed(format!(
                    "ChaosBlade {name} was not Running within {}",
                    self.inject_timeout
                )));
            }
            tokio::select! {
                () = tokio::time::sleep(poll_interval(self.inject_timeout.get())) => {}
                () = ctx.cancel_token().cancelled() => return Err(StepError::Cancelled),
            }
        }
    }
}

fn recover<'a>(
    record: &'a FaultRecord,
    ctx: &'a RecoverCtx,
) -> BoxFuture<'a, Result<Option<RecoveryReport>, String>> {
    Box::pin(async move {
        let r: Recovery = serde_json::from_value(record.recovery.clone())
            .map_err(|e| format!("fault `{}`: unreadable recovery data: {e}", record.id))?;
        let limit = ctx.timeout.unwrap_or(r.timeout.get());
        let name = recorded_name(record, &r)?;
        // CLI mode can do without the API (blade reaches the cluster itself); operator mode cannot.
        let kube = match (ctx.kube(&r.kube).await, r.mode) {
            (Ok(k), _) => Some(k),
            (Err(e), BladeMode::Operator) => return Err(e),
            (Err(_), BladeMode::Cli) => None,
        };
        // Watch from before the delete: the operator's `Destroyed` write is followed at once by
        // the finalizer's removal, too quickly for polling to see it.
        let watch = kube
            .clone()
            .map(|k| tokio::spawn(destroyed_at(k, name.clone(), limit)));
        let mut blade_error = None;
        if r.mode == BladeMode::Cli {
            if let Err(e) = blade_destroy(&r, &name, limit, ctx.force, &ctx.children).await {
                blade_error = Some(e);
            }
        }
        let gone = match &kube {
            // Whatever `blade destroy` said, the object must be gone (and in operator mode this
            // is the recovery itself).
            Some(k) => delete_chaos(
                k,
                &chaosblade_resource(),
                None,
                &name,
                limit,
                ctx.force,
                &mut |_| {},
            )
            .await
            .map_err(|e| {
                delete_failure(
                    e.to_string(),
                    blade_error.as_deref(),
                    ctx.force,
                    &ctx.log_path,
                )
            }),
            None => blade_error.map_or(Ok(()), Err),
        };
        gone?;
        let at = match watch {
            Some(w) => tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten(),
            None => None,
        };
        Ok(at.map(|t| RecoveryReport {
            controller_recovered_at: Some(t),
            ..RecoveryReport::default()
        }))
    })
}

/// The ChaosBlade object's name: the one the ledger names, else (older ledgers in CLI mode)
/// the uid `blade create` answered.
fn recorded_name(record: &FaultRecord, r: &Recovery) -> Result<String, String> {
    r.name
        .clone()
        .or_else(|| match &record.details {
            InjectionDetails::ChaosBlade(d) => Some(d.blade_uid.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            format!(
                "fault `{}`: no ChaosBlade name or uid was recorded; find the experiment with `ttplan chaos ls` or `blade status --type create`",
                record.id
            )
        })
}

/// Why the object is still there (`error`), after what `blade destroy` said, with the
/// `--force` remedy when the operator's finalizer holds it.
fn delete_failure(
    error: String,
    blade_error: Option<&str>,
    force: bool,
    log_path: &std::path::Path,
) -> String {
    // `runs/<exp>/steps/<step>.recover.log` → `runs/<exp>`.
    let run_dir = log_path
        .parent()
        .and_then(std::path::Path::parent)
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "RUN_DIR".into());
    let mut msg = error;
    if let Some(b) = blade_error {
        msg = format!("{b}; {msg}");
    }
    if !force && msg.contains(crate::kube::chaos::CHAOSBLADE_FINALIZER) {
        msg.push_str(&format!(
            " — remedy: `ttplan chaos clean --run {run_dir} --force`"
        ));
    }
    msg
}

/// `blade destroy UID --target k8s --kubeconfig K [--force-remove]`: without `--target k8s`
/// the CLI needs its local record, which a different machine (or a wiped `~/.blade`) lacks
/// (chaosblade `cli/cmd/destroy.go`, `runDestroyWithUid`).
async fn blade_destroy(
    r: &Recovery,
    uid: &str,
    limit: std::time::Duration,
    force: bool,
    groups: &crate::child::ChildGroups,
) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(&r.blade);
    cmd.args(["destroy", uid, "--target", "k8s"]);
    if let Some(k) = &r.kubeconfig {
        cmd.arg("--kubeconfig").arg(k).env("KUBECONFIG", k);
    }
    if force {
        cmd.arg("--force-remove");
    }
    let out = tokio::time::timeout(limit, crate::child::output(&mut cmd, groups))
        .await
        .map_err(|_| {
            format!(
                "`{} destroy {uid}` did not answer within {}",
                r.blade,
                humantime::format_duration(limit)
            )
        })?
        .map_err(|e| format!("cannot run `{}`: {e}", r.blade))?;
    match parse_blade_answer(
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    ) {
        Ok(_) => Ok(()),
        // The create never reached the cluster, or the object is gone already.
        Err(e) if e.is_data_not_found() => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// The operator's `Destroyed` time for `name`, watched until the object is gone or `limit`.
async fn destroyed_at(kube: Kube, name: String, limit: std::time::Duration) -> Option<String> {
    use futures_util::StreamExt;
    let api = kube.dynamic(&chaosblade_resource(), None);
    let params = ::kube::api::WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(u32::try_from(limit.as_secs().clamp(1, 290)).unwrap_or(290));
    let stream = api.watch(&params, "0").await.ok()?;
    tokio::pin!(stream);
    let mut at = None;
    while let Some(ev) = stream.next().await {
        let (obj, gone) = match ev {
            Ok(::kube::api::WatchEvent::Added(o) | ::kube::api::WatchEvent::Modified(o)) => {
                (o, false)
            }
            Ok(::kube::api::WatchEvent::Deleted(o)) => (o, true),
            _ => break,
        };
        if blade_phase(&obj) == "Destroyed" {
            at = status_written_at(&obj).or(at);
        }
        if gone {
            break;
        }
    }
    at
}

/// 16 hex digits, the shape of the uids `blade` generates itself.
fn random_uid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", h.finish())
}

fn blade_phase(obj: &DynamicObject) -> &str {
    obj.data
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// When the controller last wrote the object's status: the ChaosBlade status has no times of
/// its own, but the API server stamps every writer's `managedFields` entry (whole seconds), and
/// only the operator writes the `status` subresource — so, read when the phase has just become
/// `Running` or `Destroyed`, it is the controller's time of that transition.
pub fn status_written_at(obj: &DynamicObject) -> Option<String> {
    obj.metadata
        .managed_fields
        .as_ref()?
        .iter()
        .filter(|f| f.subresource.as_deref() == Some("status"))
        .filter_map(|f| f.time.as_ref())
        .max_by_key(|t| t.0)
        .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `namespace/pod` of every container the operator reports injected (`resStatuses[].identifier`
/// is `Namespace/NodeName/PodName/ContainerName`).
fn blade_pods(obj: &DynamicObject) -> Vec<String> {
    let mut pods: Vec<String> = obj
        .data
        .pointer("/status/expStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("resStatuses").and_then(Value::as_array))
        .flatten()
        .filter(|r| r.get("success").and_then(Value::as_bool) != Some(false))
        .filter_map(|r| r.get("identifier").and_then(Value::as_str))
        .filter_map(|id| {
            let parts: Vec<&str> = id.split('/').collect();
            (parts.len() >= 3).then(|| format!("{}/{}", parts[0], parts[2]))
        })
        .collect();
    pods.sort();
    pods.dedup();
    pods
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_status_write_time_and_pods_are_read_from_the_object() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": CHAOSBLADE_API, "kind": "ChaosBlade",
            "metadata": {"name": "0123456789abcdef", "managedFields": [
                {"manager": "blade", "operation": "Update", "apiVersion": CHAOSBLADE_API,
                 "time": "2026-01-02T03:04:01Z", "fieldsType": "FieldsV1", "fieldsV1": {}},
                {"manager": "chaosblade-operator", "operation": "Update", "apiVersion": CHAOSBLADE_API,
                 "time": "2026-01-02T03:04:07Z", "fieldsType": "FieldsV1", "fieldsV1": {},
                 "subresource": "status"},
                {"manager": "chaosblade-operator", "operation": "Update", "apiVersion": CHAOSBLADE_API,
                 "time": "2026-01-02T03:04:09Z", "fieldsType": "FieldsV1", "fieldsV1": {}},
            ]},
            "status": {"phase": "Running", "expStatuses": [{"state": "Success", "success": true,
                "resStatuses": [
                    {"id": "a", "kind": "container", "state": "Success", "success": true,
                     "identifier": "default/node-1/ts-order-service-1/ts-order-service"},
                    {"id": "b", "kind": "container", "state": "Error", "success": false,
                     "identifier": "default/node-1/ts-order-service-2/ts-order-service"},
                ]}]},
        }))
        .unwrap();
        // The status subresource's entry, not the later finalizer update nor the creator's.
        assert_eq!(
            status_written_at(&obj).as_deref(),
            Some("2026-01-02T03:04:07Z")
        );
        assert_eq!(blade_pods(&obj), vec!["default/ts-order-service-1"]);
        assert_eq!(blade_phase(&obj), "Running");
    }

    #[test]
    fn blade_answers_are_parsed() {
        assert_eq!(
            parse_blade_answer(
                r#"{"code":200,"success":true,"result":"7c1f7afc281482c8"}"#,
                ""
            ),
            Ok(Value::from("7c1f7afc281482c8"))
        );
        let e = parse_blade_answer(
            "",
            r#"{"code":47008,"success":false,"error":"invalid parameter `names`, can not find pods"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, Some(47008));
        assert!(e.to_string().contains("47008") && e.to_string().contains("can not find pods"));
        // "not found" in the text is not enough: only the record-not-found code means "gone".
        assert!(!e.is_data_not_found());
        let gone = parse_blade_answer(
            r#"{"code":67002,"success":false,"error":"`9f2c` record not found, if it's k8s experiment, please add --target k8s flag to retry"}"#,
            "",
        )
        .unwrap_err();
        assert!(gone.is_data_not_found());
        let old = parse_blade_answer(
            r#"{"code":47000,"success":false,"error":"data not found: 9f2c"}"#,
            "",
        )
        .unwrap_err();
        assert!(old.is_data_not_found());
        let invalid = parse_blade_answer(
            r#"{"code":47000,"success":false,"error":"invalid `uid` parameter value: `x`."}"#,
            "",
        )
        .unwrap_err();
        assert!(!invalid.is_data_not_found());
        assert_eq!(parse_blade_answer("oops", "").unwrap_err().code, None);
    }

    #[test]
    fn blade_create_is_given_the_pod_the_uid_and_the_flags_in_order() {
        let step: ChaosBladeConfig = serde_json::from_value(json!({
            "action": "delay", "service": "ts-order-service",
            "flags": {"classname": "a.B", "methodname": "m", "time": "3000"},
            "inject_timeout": "90s",
        }))
        .unwrap();
        let at = Placement {
            namespace: "ts".into(),
            pod: "ts-order-service-1".into(),
            container: "ts-order-service".into(),
            object_name: "0123456789abcdef".into(),
        };
        let args = step.create_args(&at, Some(std::path::Path::new("/k/config")));
        assert_eq!(
            args.join(" "),
            "create k8s container-jvm delay --classname a.B --methodname m --time 3000 \
             --names ts-order-service-1 --container-names ts-order-service --process java \
             --namespace ts --uid 0123456789abcdef --waiting-time 90s --kubeconfig /k/config"
        );
    }

    #[test]
    fn a_failed_delete_names_blades_error_and_the_force_remedy_for_the_finalizer() {
        let log = std::path::Path::new("runs/exp1/steps/inject.recover.log");
        let stuck = format!(
            "ChaosBlade x is still there; finalizers: [{}]",
            crate::kube::chaos::CHAOSBLADE_FINALIZER
        );
        assert_eq!(
            delete_failure(stuck.clone(), Some("blade failed (code 1): boom"), false, log),
            format!("blade failed (code 1): boom; {stuck} — remedy: `ttplan chaos clean --run runs/exp1 --force`")
        );
        // Already forced, or not the finalizer: no remedy.
        assert_eq!(delete_failure(stuck.clone(), None, true, log), stuck);
        assert_eq!(
            delete_failure("forbidden".into(), None, false, log),
            "forbidden"
        );
    }
}
