//! Rewrites Kubernetes manifests so every Java container loads the JaCoCo agent in tcpserver
//! mode: an init container copies the agent jar from a user-named image into an `emptyDir`, and
//! `JAVA_TOOL_OPTIONS` gets a `-javaagent` appended after any existing agent (SkyWalking's stays
//! first). The session id is the pod name through the downward API: Kubernetes expands
//! `$(POD_NAME)` only for variables defined earlier in the same `env` list, and never expands
//! `$(HOSTNAME)` (the seed scripts' bug).
//!
//! Only Deployments, StatefulSets and DaemonSets change; every other document, and every
//! workload that is already instrumented as asked, is copied byte for byte — so running the
//! rewrite on its own output changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::CoverageError;

/// Name of the volume, init container and container port the rewrite adds.
pub const AGENT_NAME: &str = "jacoco-agent";
/// Where the app containers see the agent.
pub const MOUNT_PATH: &str = "/jacoco";
/// Where the init container sees the shared volume (not `/jacoco`, which would hide an agent
/// that the image keeps there).
const INIT_MOUNT_PATH: &str = "/ttplan-jacoco";
pub const POD_NAME_VAR: &str = "POD_NAME";
const JTO: &str = "JAVA_TOOL_OPTIONS";

/// What the rewrite adds.
#[derive(Debug, Clone)]
pub struct InstrumentOptions {
    /// Image that holds `jacocoagent.jar` (the init container copies it from there).
    pub agent_image: String,
    /// Path of the agent jar inside `agent_image`.
    pub agent_path: String,
    /// Replaces the init container's copy command.
    pub init_command: Option<Vec<String>>,
    /// The agent's tcpserver port (also declared as a containerPort).
    pub port: u16,
    /// The agent's bind address: `*` (all interfaces) so Services and port-forwards reach it.
    pub address: String,
    /// `includes` per service (workload name), e.g. `ts-order-service: order.*`.
    pub includes: BTreeMap<String, String>,
    /// A Train-Ticket checkout: `includes` of a service not in `includes` is inferred from
    /// `<source_root>/<service>/src/main/java`.
    pub source_root: Option<PathBuf>,
    /// `includes` when neither the map nor the source tree says (JaCoCo's default is `*`).
    pub default_includes: String,
    /// The agent's `excludes`, if any.
    pub excludes: Option<String>,
    /// Containers to instrument, by name; empty means every container of the pod.
    pub containers: Vec<String>,
    /// Workloads (by name) to leave alone, e.g. non-Java services.
    pub skip: Vec<String>,
    /// Apply [`TRAIN_TICKET_PACKAGES`] (a known service's own packages when neither `includes`
    /// nor the source tree says) and skip [`TRAIN_TICKET_NON_JAVA`] (unless `includes` names
    /// one).
    pub train_ticket_defaults: bool,
}

impl InstrumentOptions {
    pub fn new(agent_image: impl Into<String>) -> Self {
        Self {
            agent_image: agent_image.into(),
            agent_path: DEFAULT_AGENT_PATH.into(),
            init_command: None,
            port: DEFAULT_PORT,
            address: "*".into(),
            includes: BTreeMap::new(),
            source_root: None,
            default_includes: "*".into(),
            excludes: None,
            containers: Vec::new(),
            skip: Vec::new(),
            train_ticket_defaults: true,
        }
    }

    /// Whether workload `name` is left alone: listed in `skip`, or a non-Java Train-Ticket
    /// service (with the defaults on and no `includes` of its own).
    pub fn skips(&self, name: &str) -> bool {
        self.skip.iter().any(|s| s == name)
            || (self.train_ticket_defaults
                && TRAIN_TICKET_NON_JAVA.contains(&name)
                && !self.includes.contains_key(name))
    }
}

/// The packages of Train-Ticket's Java services: each service's own code, so the agent
/// neither instruments nor reports Spring, drivers or the shared `edu.fudan.common`. The table
/// is the sandbox crate's (`ttplan_sandbox::train_ticket::JAVA_SERVICES`, where its source is
/// cited): the simulated agents report these packages, so the two cannot drift apart.
pub const TRAIN_TICKET_PACKAGES: &[(&str, &str)] = ttplan_sandbox::train_ticket::JAVA_SERVICES;

/// Train-Ticket workloads that run no JVM (Python, Go, Node.js, nginx): nothing to instrument.
pub const TRAIN_TICKET_NON_JAVA: &[&str] = &[
    "ts-avatar-service",
    "ts-news-service",
    "ts-ticket-office-service",
    "ts-ui-dashboard",
    "ts-voucher-service",
];

pub const DEFAULT_PORT: u16 = 6300;
pub const DEFAULT_AGENT_PATH: &str = "/jacoco/jacocoagent.jar";

/// What [`instrument`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InstrumentReport {
    /// Workloads rewritten now, as `Kind/name`.
    pub changed: Vec<String>,
    /// Workloads already instrumented as asked.
    pub unchanged: Vec<String>,
    /// Workloads listed in `skip`.
    pub skipped: Vec<String>,
    /// Documents that are not workloads (copied as they are).
    pub other_documents: usize,
    /// `includes` used per workload.
    pub includes: BTreeMap<String, String>,
}

/// Rewrites a multi-document manifest.
///
/// # Errors
/// On YAML that does not parse, or a workload that cannot be instrumented (e.g. its
/// `JAVA_TOOL_OPTIONS` comes from a ConfigMap, or `POD_NAME` is already something else).
pub fn instrument(
    text: &str,
    opts: &InstrumentOptions,
) -> Result<(String, InstrumentReport), CoverageError> {
    let mut report = InstrumentReport::default();
    let mut out = String::with_capacity(text.len() * 2);
    for (idx, chunk) in split_documents(text).into_iter().enumerate() {
        let Chunk { separator, body } = chunk;
        out.push_str(separator);
        let mut docs = Vec::new();
        for de in serde_yaml_ng::Deserializer::from_str(body) {
            let v = Value::deserialize(de).map_err(|e| {
                CoverageError::Manifest(format!("document {}: invalid YAML: {e}", idx + 1))
            })?;
            docs.push(v);
        }
        let doc = match docs.len() {
            0 => None,
            1 => docs.pop(),
            n => {
                return Err(CoverageError::Manifest(format!(
                    "document {}: found {n} YAML documents where one was expected; \
                     separate documents with a `---` line",
                    idx + 1
                )))
            }
        };
        let Some(doc) = doc.filter(|d| !d.is_null()) else {
            out.push_str(body);
            continue;
        };
        let Some((kind, name)) = workload(&doc) else {
            report.other_documents += 1;
            out.push_str(body);
            continue;
        };
        let label = format!("{kind}/{name}");
        if opts.skips(&name) {
            report.skipped.push(label);
            out.push_str(body);
            continue;
        }
        let includes = includes_for(&name, opts);
        report.includes.insert(name.clone(), includes.clone());
        let mut new = doc.clone();
        instrument_workload(&mut new, &name, &includes, opts)
            .map_err(|e| CoverageError::Manifest(format!("{label}: {e}")))?;
        if new == doc {
            report.unchanged.push(label);
            out.push_str(body);
            continue;
        }
        report.changed.push(label);
        let yaml = serde_yaml_ng::to_string(&new).map_err(|e| {
            CoverageError::Manifest(format!("{kind}/{name}: cannot emit YAML: {e}"))
        })?;
        // Comments above the document survive; comments inside it cannot (the YAML emitter drops them).
        out.push_str(leading_comments(body));
        out.push_str(&yaml);
    }
    Ok((out, report))
}

struct Chunk<'a> {
    /// The `---` line (with its newline) that opened the document, or "" for the first.
    separator: &'a str,
    body: &'a str,
}

/// Splits at `---` lines (optionally followed by a comment), keeping every byte, so documents
/// that do not change can be copied verbatim.
fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut sep = "";
    let mut body_start = 0;
    let mut pos = 0;
    while pos < text.len() {
        let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1);
        let line = &text[pos..end];
        if is_separator(line) {
            chunks.push(Chunk {
                separator: sep,
                body: &text[body_start..pos],
            });
            sep = line;
            body_start = end;
        }
        pos = end;
    }
    chunks.push(Chunk {
        separator: sep,
        body: &text[body_start..],
    });
    chunks
}

fn is_separator(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("---") else {
        return false;
    };
    let rest = rest.trim();
    rest.is_empty() || rest.starts_with('#')
}

fn leading_comments(body: &str) -> &str {
    let mut end = 0;
    for line in body.split_inclusive('\n') {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            end += line.len();
        } else {
            break;
        }
    }
    &body[..end]
}

/// `(kind, name)` of a Deployment, StatefulSet or DaemonSet.
fn workload(doc: &Value) -> Option<(String, String)> {
    let kind = doc.get("kind")?.as_str()?;
    if !matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet") {
        return None;
    }
    let name = doc.get("metadata")?.get("name")?.as_str()?;
    Some((kind.to_string(), name.to_string()))
}

/// `includes` for one service: the config map, else the source tree, else the Train-Ticket
/// table (when on), else the default.
pub fn includes_for(service: &str, opts: &InstrumentOptions) -> String {
    if let Some(i) = opts.includes.get(service) {
        return i.clone();
    }
    if let Some(root) = &opts.source_root {
        if let Some(pkg) = dominant_package(&root.join(service).join("src/main/java")) {
            return format!("{pkg}.*");
        }
    }
    if opts.train_ticket_defaults {
        if let Some((_, pkg)) = TRAIN_TICKET_PACKAGES.iter().find(|(s, _)| *s == service) {
            return format!("{pkg}.*");
        }
    }
    opts.default_includes.clone()
}

/// The package that holds the service's code: from `src/main/java`, the top-level directory
/// with the most `.java` files, then down while a single subdirectory holds all of them and
/// the directory itself has none (`fdse/microservice/{controller,service}` → `fdse.microservice`).
pub fn dominant_package(java_root: &Path) -> Option<String> {
    let tops = java_dirs(java_root);
    let (mut dir, _) = tops
        .into_iter()
        .max_by_key(|(p, n)| (*n, std::cmp::Reverse(p.clone())))?;
    let mut parts = vec![dir.file_name()?.to_str()?.to_string()];
    loop {
        if has_java_files(&dir) {
            break;
        }
        let subs = java_dirs(&dir);
        if subs.len() != 1 {
            break;
        }
        let Some((sub, _)) = subs.into_iter().next() else {
            break;
        };
        parts.push(sub.file_name()?.to_str()?.to_string());
        dir = sub;
    }
    Some(parts.join("."))
}

/// Subdirectories holding at least one `.java` file (at any depth), with their counts.
fn java_dirs(dir: &Path) -> Vec<(PathBuf, usize)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, usize)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .map(|p| {
            let n = count_java(&p);
            (p, n)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    out.sort();
    out
}

fn count_java(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .map(|p| {
            if p.is_dir() {
                count_java(&p)
            } else {
                usize::from(p.extension().is_some_and(|e| e == "java"))
            }
        })
        .sum()
}

fn has_java_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.path().is_file() && e.path().extension().is_some_and(|x| x == "java"))
    })
}

/// The `-javaagent` option for one service.
pub fn agent_option(includes: &str, opts: &InstrumentOptions) -> String {
    let mut s = format!(
        "-javaagent:{MOUNT_PATH}/jacocoagent.jar=output=tcpserver,address={},port={},includes={includes}",
        opts.address, opts.port
    );
    if let Some(ex) = opts.excludes.as_deref().filter(|e| !e.is_empty()) {
        s.push_str(",excludes=");
        s.push_str(ex);
    }
    s.push_str(",sessionid=$(");
    s.push_str(POD_NAME_VAR);
    s.push(')');
    s
}

fn instrument_workload(
    doc: &mut Value,
    name: &str,
    includes: &str,
    opts: &InstrumentOptions,
) -> Result<(), String> {
    let pod = doc
        .get_mut("spec")
        .and_then(|s| s.get_mut("template"))
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| "no spec.template.spec".to_string())?;

    let volume = map([
        ("name", AGENT_NAME.into()),
        ("emptyDir", Value::Mapping(Mapping::new())),
    ]);
    upsert_named(seq_field(pod, "volumes")?, AGENT_NAME, volume);

    let command = match &opts.init_command {
        Some(c) => c.clone(),
        None => vec![
            "sh".into(),
            "-c".into(),
            format!("cp {} {INIT_MOUNT_PATH}/jacocoagent.jar", opts.agent_path),
        ],
    };
    let init = map([
        ("name", AGENT_NAME.into()),
        ("image", opts.agent_image.clone().into()),
        (
            "command",
            Value::Sequence(command.into_iter().map(Value::from).collect()),
        ),
        (
            "volumeMounts",
            Value::Sequence(vec![mount(INIT_MOUNT_PATH)]),
        ),
    ]);
    upsert_named(seq_field(pod, "initContainers")?, AGENT_NAME, init);

    let agent = agent_option(includes, opts);
    let containers = pod
        .get_mut("containers")
        .and_then(Value::as_sequence_mut)
        .ok_or_else(|| "no containers".to_string())?;
    let mut done = 0;
    for c in containers.iter_mut() {
        let cname = c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !opts.containers.is_empty() && !opts.containers.contains(&cname) {
            continue;
        }
        let c = c
            .as_mapping_mut()
            .ok_or_else(|| format!("container `{cname}` is not a mapping"))?;
        instrument_container(c, &agent, opts.port)
            .map_err(|e| format!("container `{cname}`: {e}"))?;
        done += 1;
    }
    if done == 0 {
        return Err(format!(
            "none of the containers {:?} is in workload `{name}`",
            opts.containers
        ));
    }
    Ok(())
}

fn instrument_container(c: &mut Mapping, agent: &str, port: u16) -> Result<(), String> {
    upsert_named(seq_field(c, "volumeMounts")?, AGENT_NAME, mount(MOUNT_PATH));
    let env = seq_field(c, "env")?;
    define_pod_name(env)?;
    append_agent(env, agent)?;
    declare_agent_port(seq_field(c, "ports")?, port)
}

/// The index of env variable `name`.
fn env_position(env: &[Value], name: &str) -> Option<usize> {
    env.iter()
        .position(|e| e.get("name").and_then(Value::as_str) == Some(name))
}

/// Defines `POD_NAME` as the pod's name, before `JAVA_TOOL_OPTIONS` (Kubernetes expands
/// `$(POD_NAME)` only for variables defined earlier in the list); refuses a `POD_NAME` that
/// is something else.
fn define_pod_name(env: &mut Vec<Value>) -> Result<(), String> {
    match env_position(env, POD_NAME_VAR) {
        Some(i) => {
            let field = env[i]
                .get("valueFrom")
                .and_then(|v| v.get("fieldRef"))
                .and_then(|f| f.get("fieldPath"))
                .and_then(Value::as_str);
            if field != Some("metadata.name") {
                return Err(format!(
                    "env {POD_NAME_VAR} is already defined, not as the pod name \
                     (fieldRef metadata.name); rename it or drop it"
                ));
            }
        }
        None => {
            let pod_name = map([
                ("name", POD_NAME_VAR.into()),
                (
                    "valueFrom",
                    map([("fieldRef", map([("fieldPath", "metadata.name".into())]))]),
                ),
            ]);
            // Before JAVA_TOOL_OPTIONS when there is one: later definitions are not expanded.
            let at = env_position(env, JTO).unwrap_or(env.len());
            env.insert(at, pod_name);
        }
    }
    // An existing POD_NAME after JAVA_TOOL_OPTIONS would leave `$(POD_NAME)` unexpanded.
    if let (Some(p), Some(j)) = (env_position(env, POD_NAME_VAR), env_position(env, JTO)) {
        if p > j {
            let v = env.remove(p);
            env.insert(j, v);
        }
    }
    Ok(())
}

/// Appends the `-javaagent` option to `JAVA_TOOL_OPTIONS` (created when absent), replacing
/// an earlier JaCoCo agent of ours.
fn append_agent(env: &mut Vec<Value>, agent: &str) -> Result<(), String> {
    let Some(j) = env_position(env, JTO) else {
        env.push(map([("name", JTO.into()), ("value", agent.into())]));
        return Ok(());
    };
    let entry = env[j]
        .as_mapping_mut()
        .ok_or_else(|| format!("env {JTO} is not a mapping"))?;
    if entry.contains_key("valueFrom") {
        return Err(format!(
            "{JTO} comes from valueFrom; the agent cannot be appended to it"
        ));
    }
    let old = entry
        .get("value")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Drop a previous JaCoCo agent (other options) so re-running with new options
    // replaces it instead of loading two agents.
    let ours = format!("-javaagent:{MOUNT_PATH}/jacocoagent.jar");
    let mut parts: Vec<&str> = old
        .split_whitespace()
        .filter(|t| !t.starts_with(&ours))
        .collect();
    parts.push(agent);
    entry.insert("value".into(), parts.join(" ").into());
    Ok(())
}

/// Declares the agent's port as the containerPort `jacoco-agent`, unless another port entry
/// already uses that number.
fn declare_agent_port(ports: &mut Vec<Value>, port: u16) -> Result<(), String> {
    let port_entry = map([
        ("name", AGENT_NAME.into()),
        ("containerPort", u64::from(port).into()),
        ("protocol", "TCP".into()),
    ]);
    let same_port =
        |p: &Value| p.get("containerPort").and_then(Value::as_u64) == Some(u64::from(port));
    if let Some(i) = ports
        .iter()
        .position(|p| p.get("name").and_then(Value::as_str) == Some(AGENT_NAME))
    {
        ports[i] = port_entry;
    } else if let Some(p) = ports.iter().find(|p| same_port(p)) {
        return Err(format!(
            "port {port} is already used by another containerPort ({}); choose another agent port",
            serde_yaml_ng::to_string(p)
                .unwrap_or_default()
                .trim()
                .replace('\n', ", ")
        ));
    } else {
        ports.push(port_entry);
    }
    // Port names must be unique and at most 15 characters: `jacoco-agent` is 12.
    Ok(())
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Mapping(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

fn mount(path: &str) -> Value {
    map([("name", AGENT_NAME.into()), ("mountPath", path.into())])
}

/// The sequence at `key`, created when absent (or null).
fn seq_field<'a>(m: &'a mut Mapping, key: &str) -> Result<&'a mut Vec<Value>, String> {
    let v = m
        .entry(Value::from(key))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if v.is_null() {
        *v = Value::Sequence(Vec::new());
    }
    v.as_sequence_mut()
        .ok_or_else(|| format!("`{key}` is not a list"))
}

/// Replaces the entry named `name`, or appends `value`.
fn upsert_named(seq: &mut Vec<Value>, name: &str, value: Value) {
    match seq
        .iter()
        .position(|e| e.get("name").and_then(Value::as_str) == Some(name))
    {
        Some(i) => seq[i] = value,
        None => seq.push(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOY: &str = "\
# leading comment
apiVersion: v1
kind: Service
metadata: {name: svc}   # odd style kept
spec:
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ts-order-service
spec:
  template:
    spec:
      containers:
        - name: ts-order-service
          image: x
          env:
            - name: JAVA_TOOL_OPTIONS
              value: \"-javaagent:/skywalking/agent/skywalking-agent.jar\"
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
";

    fn opts() -> InstrumentOptions {
        let mut o = InstrumentOptions::new("registry.local/jacoco-agent:0.8.6");
        o.includes
            .insert("ts-order-service".into(), "order.*".into());
        o
    }

    fn env_names(doc: &Value) -> Vec<String> {
        doc["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn appends_after_existing_agents_and_moves_pod_name_first() {
        let (out, rep) = instrument(DEPLOY, &opts()).unwrap();
        assert_eq!(rep.changed, ["Deployment/ts-order-service"]);
        assert_eq!(rep.other_documents, 1);
        assert!(
            out.starts_with(DEPLOY.split("---\n").next().unwrap()),
            "{out}"
        );
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&out)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        let d = &docs[1];
        assert_eq!(env_names(d), ["POD_NAME", "JAVA_TOOL_OPTIONS"]);
        let jto = d["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"]
            .as_str()
            .unwrap();
        assert_eq!(
            jto,
            "-javaagent:/skywalking/agent/skywalking-agent.jar \
             -javaagent:/jacoco/jacocoagent.jar=output=tcpserver,address=*,port=6300,includes=order.*,sessionid=$(POD_NAME)"
        );
        let (again, rep2) = instrument(&out, &opts()).unwrap();
        assert_eq!(again, out);
        assert_eq!(rep2.unchanged, ["Deployment/ts-order-service"]);
    }

    #[test]
    fn creates_java_tool_options_and_replaces_an_old_jacoco_agent() {
        let text = "kind: StatefulSet\nmetadata: {name: db}\nspec:\n  template:\n    spec:\n      containers: [{name: db, image: y}]\n";
        let mut o = opts();
        o.excludes = Some("*.generated.*".into());
        let (out, _) = instrument(text, &o).unwrap();
        let d: Value = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(env_names(&d), ["POD_NAME", "JAVA_TOOL_OPTIONS"]);
        assert!(out.contains("includes=*,excludes=*.generated.*,sessionid=$(POD_NAME)"));
        o.port = 6400;
        let (out2, rep) = instrument(&out, &o).unwrap();
        assert_eq!(rep.changed.len(), 1);
        assert_eq!(out2.matches("-javaagent").count(), 1, "{out2}");
        assert!(out2.contains("port=6400"));
        assert!(!out2.contains("6300"));
    }

    #[test]
    fn refuses_what_it_cannot_instrument_and_names_the_workload() {
        let text = "kind: Deployment\nmetadata: {name: w}\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          env:\n            - {name: POD_NAME, value: fixed}\n";
        let e = instrument(text, &opts()).unwrap_err().to_string();
        assert!(
            e.contains("Deployment/w: container `c`: env POD_NAME is already defined"),
            "{e}"
        );
        let text = "kind: Deployment\nmetadata: {name: w}\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          env:\n            - name: JAVA_TOOL_OPTIONS\n              valueFrom: {configMapKeyRef: {name: a, key: b}}\n";
        let e = instrument(text, &opts()).unwrap_err().to_string();
        assert!(e.contains("JAVA_TOOL_OPTIONS comes from valueFrom"), "{e}");
    }

    #[test]
    fn infers_includes_from_the_dominant_package() {
        let dir = tempfile::tempdir().unwrap();
        let java = |rel: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "class X {}").unwrap();
        };
        java("ts-a-service/src/main/java/fdse/microservice/controller/A.java");
        java("ts-a-service/src/main/java/fdse/microservice/service/B.java");
        java("ts-a-service/src/main/java/fdse/microservice/Main.java");
        java("ts-b-service/src/main/java/train/controller/A.java");
        java("ts-b-service/src/main/java/train/B.java");
        java("ts-b-service/src/main/java/other/C.java");
        let mut o = InstrumentOptions::new("img");
        o.source_root = Some(dir.path().to_path_buf());
        assert_eq!(includes_for("ts-a-service", &o), "fdse.microservice.*");
        assert_eq!(includes_for("ts-b-service", &o), "train.*");
        assert_eq!(includes_for("ts-missing", &o), "*");
    }

    #[test]
    fn train_ticket_defaults_give_own_packages_and_skip_non_java_services() {
        let mut o = InstrumentOptions::new("img");
        assert_eq!(TRAIN_TICKET_PACKAGES.len(), 41);
        assert_eq!(includes_for("ts-order-service", &o), "order.*");
        assert_eq!(includes_for("ts-basic-service", &o), "fdse.microservice.*");
        assert_eq!(includes_for("ts-payment-service", &o), "com.trainticket.*");
        assert_eq!(includes_for("my-own-service", &o), "*");
        assert!(o.skips("ts-ui-dashboard") && o.skips("ts-voucher-service"));
        assert!(!o.skips("ts-order-service"));
        // The plan's word wins: an explicit `includes` instruments and sets the pattern.
        o.includes
            .insert("ts-order-service".into(), "order.service.*".into());
        o.includes.insert("ts-news-service".into(), "news.*".into());
        assert_eq!(includes_for("ts-order-service", &o), "order.service.*");
        assert!(!o.skips("ts-news-service"));
        // Off: JaCoCo's `*` (or `default_includes`) everywhere, nothing skipped by name.
        o.train_ticket_defaults = false;
        o.default_includes = "com.acme.*".into();
        assert_eq!(includes_for("ts-user-service", &o), "com.acme.*");
        assert!(!o.skips("ts-ui-dashboard"));
    }
}
