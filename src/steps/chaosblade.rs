//! `chaosblade`: JVM (code-level) faults with ChaosBlade, either through the `blade` CLI
//! (`blade create k8s container-jvm <action> …`, uid from its JSON answer, `blade destroy <uid>`)
//! or by creating the operator's cluster-scoped `ChaosBlade` object. The target pod is a Ready
//! pod of the service, picked by label as the dataset scripts did.

use std::path::PathBuf;

use ::kube::api::{Api, DynamicObject, ListParams};
use futures_util::future::BoxFuture;
use indexmap::IndexMap;
use k8s_openapi::api::core::v1::Pod;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::chaos_mesh::dns_name;
use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::chaos_admin::delete_chaos;
use crate::engine::faults::{FaultRecord, RecoverCtx};
use crate::kube::chaos::{chaosblade_injection, chaosblade_resource, Injection, CHAOSBLADE_API};
use crate::kube::{poll_interval, Kube, KubeSettings};
use crate::plan::Duration;

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
    /// Operator mode: the object's name (known before creation). CLI mode: the uid, known only
    /// once `blade create` answered (then kept in the record's details).
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

/// `{"code":200,"success":true,"result":…}` → the result; anything else → its error text.
pub fn parse_blade_answer(stdout: &str, stderr: &str) -> Result<Value, String> {
    let text = if stdout.trim().is_empty() {
        stderr
    } else {
        stdout
    };
    let v: Value = serde_json::from_str(text.trim())
        .map_err(|_| format!("blade answered something that is not JSON: {}", text.trim()))?;
    if v.get("success").and_then(Value::as_bool) == Some(true) {
        return Ok(v.get("result").cloned().unwrap_or(Value::Null));
    }
    let err = v
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            v.pointer("/result/error")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| v.to_string());
    Err(format!(
        "blade failed (code {}): {err}",
        v.get("code").cloned().unwrap_or(Value::Null)
    ))
}

async fn ready_pod(kube: &Kube, ns: &str, label: &str, service: &str) -> Result<String, StepError> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), ns);
    let pods = api
        .list(&ListParams::default().labels(&format!("{label}={service}")))
        .await
        .map_err(kube.err(format!("listing pods of {service}")))
        .map_err(|e| StepError::failed(e.to_string()))?;
    let mut ready: Vec<String> = pods
        .items
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
    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let kube = ctx.kube().await?;
        let ns = self
            .namespace
            .clone()
            .unwrap_or_else(|| kube.namespace.clone());
        let container = self
            .container
            .clone()
            .unwrap_or_else(|| self.service.clone());
        let pod = ready_pod(kube, &ns, &self.service_label, &self.service).await?;
        let object_name = dns_name(&format!("{}-{}", ctx.exp_name(), ctx.step_name()));
        let recovery = Recovery {
            mode: self.mode,
            blade: self.blade.clone(),
            kubeconfig: kubeconfig_path(ctx.kube_settings()),
            name: (self.mode == BladeMode::Operator).then(|| object_name.clone()),
            timeout: self.recover_timeout,
            kube: ctx.kube_settings().clone(),
        };
        let params = json!({
            "kind": format!("chaosblade/{}/{}", self.target, self.action),
            "target": self.target, "action": self.action, "flags": self.flags,
            "service": self.service, "container": container, "process": self.process,
        });
        let id = ctx
            .register_fault(
                Self::KIND,
                serde_json::to_value(&recovery).map_err(StepError::failed)?,
                params,
            )
            .await?;
        let target = json!({"namespace": ns, "service": self.service, "pods": [format!("{ns}/{pod}")], "container": container});
        ctx.progress(format!(
            "injecting {} {} into {ns}/{pod}",
            self.target, self.action
        ));
        let (uid, object) = match self.mode {
            BladeMode::Cli => (
                self.create_cli(ctx, &ns, &pod, &container, recovery.kubeconfig.as_deref())
                    .await?,
                None,
            ),
            BladeMode::Operator => {
                let obj = self
                    .create_operator(ctx, kube, &object_name, &ns, &pod, &container)
                    .await?;
                (
                    obj.metadata.uid.clone().unwrap_or_default(),
                    Some(object_name.clone()),
                )
            }
        };
        let details = json!({
            "object": {"apiVersion": CHAOSBLADE_API, "kind": "ChaosBlade", "name": object.clone().unwrap_or_else(|| uid.clone()), "uid": uid},
            "blade_uid": uid,
            "target": target,
        });
        ctx.fault_injected(&id, details).await?;
        Ok(StepOutputs::default()
            .value("uid", uid)
            .value("pod", pod)
            .value("namespace", ns))
    }
}

impl ChaosBladeConfig {
    async fn create_cli(
        &self,
        ctx: &StepCtx,
        ns: &str,
        pod: &str,
        container: &str,
        kubeconfig: Option<&std::path::Path>,
    ) -> Result<String, StepError> {
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
            pod.into(),
            "--container-names".into(),
            container.into(),
            "--process".into(),
            self.process.clone(),
            "--namespace".into(),
            ns.into(),
        ]);
        if let Some(k) = kubeconfig {
            args.push("--kubeconfig".into());
            args.push(k.display().to_string());
        }
        let mut cmd = tokio::process::Command::new(&self.blade);
        cmd.args(&args)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        let out = tokio::select! {
            r = tokio::time::timeout(self.inject_timeout.get(), cmd.output()) => match r {
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
        .map_err(StepError::Failed)?;
        // `blade create` answers the experiment uid as its result.
        result.as_str().map(str::to_string).ok_or_else(|| {
            StepError::failed(format!("blade create answered no experiment uid: {result}"))
        })
    }

    async fn create_operator(
        &self,
        ctx: &StepCtx,
        kube: &Kube,
        name: &str,
        ns: &str,
        pod: &str,
        container: &str,
    ) -> Result<DynamicObject, StepError> {
        let ar = chaosblade_resource();
        kube.ensure_resource("ChaosBlade", CHAOSBLADE_API, "ChaosBlade", "chaosblades")
            .await
            .map_err(|e| StepError::failed(e.to_string()))?;
        let mut matchers = vec![
            json!({"name": "names", "value": [pod]}),
            json!({"name": "namespace", "value": [ns]}),
            json!({"name": "container-names", "value": [container]}),
            json!({"name": "process", "value": [self.process]}),
        ];
        for (k, v) in &self.flags {
            matchers.push(json!({"name": k, "value": [v]}));
        }
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": CHAOSBLADE_API, "kind": "ChaosBlade",
            "metadata": {"name": name, "labels": {"ttplan.io/step": super::chaos_mesh::label_value(ctx.step_name())}},
            "spec": {"experiments": [{
                "scope": "container", "target": self.target, "action": self.action,
                "desc": format!("ttplan {} {}", ctx.exp_name(), ctx.step_name()),
                "matchers": matchers,
            }]},
        }))
        .map_err(StepError::failed)?;
        kube.apply(&ar, None, &obj)
            .await
            .map_err(|e| StepError::failed(e.to_string()))?;
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
) -> BoxFuture<'a, Result<Option<Value>, String>> {
    Box::pin(async move {
        let r: Recovery = serde_json::from_value(record.recovery.clone())
            .map_err(|e| format!("fault `{}`: unreadable recovery data: {e}", record.id))?;
        let limit = ctx.timeout.unwrap_or(r.timeout.get());
        match r.mode {
            BladeMode::Cli => {
                let Some(uid) = record.details.get("blade_uid").and_then(Value::as_str) else {
                    return Err(format!(
                        "fault `{}`: `blade create` never answered with a uid; find the experiment with `ttplan chaos ls` or `blade status`",
                        record.id
                    ));
                };
                let mut cmd = tokio::process::Command::new(&r.blade);
                cmd.args(["destroy", uid])
                    .kill_on_drop(true)
                    .stdin(std::process::Stdio::null());
                if let Some(k) = &r.kubeconfig {
                    cmd.env("KUBECONFIG", k);
                }
                let out = tokio::time::timeout(limit, cmd.output())
                    .await
                    .map_err(|_| {
                        format!(
                            "`{} destroy {uid}` did not answer within {}",
                            r.blade,
                            humantime::format_duration(limit)
                        )
                    })?
                    .map_err(|e| format!("cannot run `{}`: {e}", r.blade))?;
                parse_blade_answer(
                    &String::from_utf8_lossy(&out.stdout),
                    &String::from_utf8_lossy(&out.stderr),
                )
                .map(|_| None)
                .or_else(|e| {
                    if e.contains("not found") {
                        Ok(None)
                    } else {
                        Err(e)
                    }
                })
            }
            BladeMode::Operator => {
                let name = r
                    .name
                    .clone()
                    .ok_or("operator fault without an object name")?;
                let kube = &ctx.kube(&r.kube).await?;
                delete_chaos(
                    kube,
                    &chaosblade_resource(),
                    None,
                    &name,
                    limit,
                    ctx.force,
                    &mut |_| {},
                )
                .await
                .map_err(|e| e.to_string())?;
                Ok(None)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            r#"{"code":52000,"success":false,"error":"the pod not found"}"#,
        )
        .unwrap_err();
        assert!(
            e.contains("52000") && e.contains("the pod not found"),
            "{e}"
        );
        assert!(parse_blade_answer("oops", "").is_err());
    }
}
