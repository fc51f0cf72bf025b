//! Kubernetes access: client construction from `--kubeconfig`/`KUBECONFIG`, `--context` and
//! `-n/--namespace` (created lazily, so plans without cluster steps never need a cluster), and
//! the few operations steps share — server-side apply, delete-and-wait, CRD presence checks —
//! with errors that say what failed instead of dumping a 404.

use std::path::PathBuf;
use std::time::Duration;

use ::kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::discovery::ApiResource;
use ::kube::{Client, Config};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

pub mod chaos;
pub mod cleanup;
pub mod discovery;
pub mod names;
pub mod pods;

/// The field manager ttplan's server-side applies use.
pub const FIELD_MANAGER: &str = "ttplan";

/// How to reach the cluster, as given on the command line.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KubeSettings {
    /// `--kubeconfig` (else `KUBECONFIG`, else `~/.kube/config`, else in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `-n/--namespace`: default namespace for steps that name none.
    pub namespace: Option<String>,
    /// `--request-timeout`: how long one request may wait for an answer
    /// ([`DEFAULT_REQUEST_TIMEOUT`] when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Duration>,
}

/// An API server that accepts connections and never answers must not hang a run: every request
/// gives up after this long without an answer (`--request-timeout` changes it). Long enough for
/// a slow list of a big namespace; port-forward sessions see only short pauses.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Connecting (TCP + TLS) gives up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, thiserror::Error)]
pub enum KubeError {
    #[error("cannot load the Kubernetes configuration: {0}")]
    Config(String),
    #[error("cannot reach the Kubernetes API server at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    #[error("{product} is not installed: no {api_version} {kind} in the cluster")]
    MissingCrd {
        product: &'static str,
        api_version: String,
        kind: String,
    },
    #[error("{action}: {message} (HTTP {code} {reason})")]
    Api {
        action: String,
        code: u16,
        reason: String,
        message: String,
    },
    /// The object was still there when the wait for its deletion ran out (a finalizer that
    /// did not clear): the one error `--force` can help with.
    #[error("{0}")]
    DeleteTimeout(String),
    #[error("{0}")]
    Other(String),
}

impl KubeError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, KubeError::Api { code: 404, .. })
    }

    /// Wraps a client error with what was being done.
    pub fn from_kube(action: impl Into<String>, server: &str, e: ::kube::Error) -> Self {
        let action = action.into();
        match e {
            ::kube::Error::Api(s) => KubeError::Api {
                action,
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
            },
            ::kube::Error::HyperError(e) => KubeError::Unreachable {
                server: server.to_string(),
                detail: e.to_string(),
            },
            ::kube::Error::Service(e) => KubeError::Unreachable {
                server: server.to_string(),
                detail: source_chain(&*e),
            },
            other => KubeError::Other(format!("{action}: {other}")),
        }
    }
}

fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// A connected client and the server it talks to (for messages).
#[derive(Clone)]
pub struct Kube {
    pub client: Client,
    pub server: String,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
}

impl Kube {
    pub fn err(&self, action: impl Into<String>) -> impl FnOnce(::kube::Error) -> KubeError + '_ {
        let action = action.into();
        move |e| KubeError::from_kube(action, &self.server, e)
    }

    pub fn dynamic(&self, ar: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        }
    }

    /// Fails with [`KubeError::MissingCrd`] when the API server does not serve `plural` in
    /// `api_version` — what a missing CRD looks like.
    ///
    /// # Errors
    /// Missing resource, unreachable server.
    pub async fn ensure_resource(
        &self,
        product: &'static str,
        api_version: &str,
        kind: &str,
        plural: &str,
    ) -> Result<(), KubeError> {
        let missing = || KubeError::MissingCrd {
            product,
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        };
        match self.client.list_api_group_resources(api_version).await {
            Ok(list) if list.resources.iter().any(|r| r.name == plural) => Ok(()),
            Ok(_) => Err(missing()),
            Err(::kube::Error::Api(s)) if s.code == 404 => Err(missing()),
            Err(e) => Err(KubeError::from_kube(
                format!("looking up {api_version}"),
                &self.server,
                e,
            )),
        }
    }

    /// Server-side apply (create or update) as `ttplan`, forcing ownership of conflicting fields.
    ///
    /// # Errors
    /// API errors (422 invalid object, 404 missing resource…), unreachable server.
    pub async fn apply(
        &self,
        ar: &ApiResource,
        namespace: Option<&str>,
        obj: &DynamicObject,
    ) -> Result<DynamicObject, KubeError> {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let api = self.dynamic(ar, namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(obj))
            .await
            .map_err(self.err(format!(
                "applying {} {}",
                ar.kind,
                qualified(namespace, &name)
            )))
    }

    pub async fn get_opt(
        &self,
        ar: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<DynamicObject>, KubeError> {
        self.dynamic(ar, namespace)
            .get_opt(name)
            .await
            .map_err(self.err(format!(
                "reading {} {}",
                ar.kind,
                qualified(namespace, name)
            )))
    }

    /// Deletes an object and waits until it is gone (finalizers done). A 404 means done.
    /// `observe` sees every state read while waiting (e.g. to capture recovery records).
    ///
    /// # Errors
    /// [`KubeError::DeleteTimeout`] naming the finalizers when the object is still there after `limit`.
    pub async fn delete_and_wait(
        &self,
        ar: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        limit: Duration,
        mut observe: impl FnMut(&DynamicObject),
    ) -> Result<(), KubeError> {
        let api = self.dynamic(ar, namespace);
        let what = format!("{} {}", ar.kind, qualified(namespace, name));
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(::kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => {
                return Err(KubeError::from_kube(
                    format!("deleting {what}"),
                    &self.server,
                    e,
                ))
            }
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let current = match api.get_opt(name).await {
                Ok(None) => return Ok(()),
                Ok(Some(o)) => {
                    observe(&o);
                    o
                }
                Err(e) => {
                    return Err(KubeError::from_kube(
                        format!("reading {what}"),
                        &self.server,
                        e,
                    ))
                }
            };
            if tokio::time::Instant::now() >= deadline {
                let finalizers = current.metadata.finalizers.unwrap_or_default().join(", ");
                return Err(KubeError::DeleteTimeout(format!(
                    "{what} is still being deleted after {}: finalizers [{finalizers}] did not clear",
                    humantime::format_duration(limit)
                )));
            }
            tokio::time::sleep(poll_interval(limit)).await;
        }
    }
}

/// A pod's `Ready` condition is `True`.
pub fn pod_is_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a pod name is selected by `name_prefixes` (an empty list selects every name).
pub fn name_selected(name: &str, prefixes: &[String]) -> bool {
    prefixes.is_empty() || prefixes.iter().any(|p| name.starts_with(p.as_str()))
}

/// Polling cadence for waits: fast for short limits (tests), gentle for long ones.
pub fn poll_interval(limit: Duration) -> Duration {
    (limit / 50).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

pub fn qualified(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// The run's cluster access; the client is built on first use.
#[derive(Debug)]
pub struct KubeAccess {
    settings: KubeSettings,
    cell: OnceCell<Result<Kube, KubeError>>,
}

impl KubeSettings {
    /// Whether a cluster is named (kubeconfig or context); the request timeout does not count.
    pub fn names_cluster(&self) -> bool {
        self.kubeconfig.is_some() || self.context.is_some() || self.namespace.is_some()
    }

    /// The same selection with `kubeconfig` made absolute against the current directory, so a
    /// fault ledger that records it can be used from anywhere (`chaos clean --run` after kill -9).
    #[must_use]
    pub fn absolute(mut self) -> Self {
        if let Some(p) = &self.kubeconfig {
            if let Ok(abs) = std::path::absolute(p) {
                self.kubeconfig = Some(abs);
            }
        }
        self
    }
}

impl KubeAccess {
    pub fn new(settings: KubeSettings) -> Self {
        Self {
            settings: settings.absolute(),
            cell: OnceCell::new(),
        }
    }

    pub fn settings(&self) -> &KubeSettings {
        &self.settings
    }

    /// # Errors
    /// A configuration that cannot be loaded (no kubeconfig, unknown context…).
    pub async fn get(&self) -> Result<&Kube, KubeError> {
        self.cell
            .get_or_init(|| connect(&self.settings))
            .await
            .as_ref()
            .map_err(Clone::clone)
    }
}

async fn connect(s: &KubeSettings) -> Result<Kube, KubeError> {
    let opts = KubeConfigOptions {
        context: s.context.clone(),
        ..Default::default()
    };
    let config = match &s.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?
        }
        None if s.context.is_some() => Config::from_kubeconfig(&opts)
            .await
            .map_err(|e| KubeError::Config(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| KubeError::Config(format!("{e} (set KUBECONFIG or pass --kubeconfig)")))?,
    };
    let mut config = config;
    let timeout = s.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
    config.connect_timeout = Some(CONNECT_TIMEOUT.min(timeout));
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    // Count the read timeout from when a request is sent, not from when a pooled connection
    // went idle.
    config.reset_reader_on_write = true;
    let server = config.cluster_url.to_string();
    let namespace = s
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| KubeError::Config(e.to_string()))?;
    Ok(Kube {
        client,
        server,
        namespace,
    })
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("server", &self.server)
            .field("namespace", &self.namespace)
            .finish()
    }
}
