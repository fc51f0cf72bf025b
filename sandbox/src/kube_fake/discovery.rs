//! The resources the fake serves, and the discovery documents built from them
//! (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/<group>`, `/apis/<group>/<version>`).
//! A CRD that is not installed is simply absent here, so its paths answer 404 like a cluster
//! without that CRD.

use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// Custom resources: lists keep kind/apiVersion on items, DELETE answers a Status.
    pub custom: bool,
    pub short_names: &'static [&'static str],
    /// Fields a `fieldSelector` may use on this resource.
    pub field_selectors: &'static [&'static str],
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` / `stresschaos.chaos-mesh.org`, as used in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const META_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];
const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "status.phase",
    "spec.nodeName",
    "status.podIP",
];
const EVENT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "reason",
    "type",
    "source",
];

const EVENT_V1_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "reason",
    "type",
    "reportingController",
];

#[allow(clippy::too_many_arguments)]
const fn def(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    status_subresource: bool,
    custom: bool,
    short_names: &'static [&'static str],
) -> ResourceDef {
    ResourceDef {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        status_subresource,
        custom,
        short_names,
        field_selectors: META_FIELDS,
    }
}

pub const CHAOS_MESH_GROUP: &str = "chaos-mesh.org";
pub const CHAOSBLADE_GROUP: &str = "chaosblade.io";

/// Every resource the fake knows, given which CRDs are installed.
pub fn catalogue(chaos_mesh: bool, chaosblade: bool) -> Vec<ResourceDef> {
    let mut defs = vec![
        ResourceDef {
            field_selectors: POD_FIELDS,
            ..def("", "v1", "pods", "pod", "Pod", true, true, false, &["po"])
        },
        def(
            "",
            "v1",
            "services",
            "service",
            "Service",
            true,
            true,
            false,
            &["svc"],
        ),
        ResourceDef {
            field_selectors: EVENT_FIELDS,
            ..def(
                "",
                "v1",
                "events",
                "event",
                "Event",
                true,
                false,
                false,
                &["ev"],
            )
        },
        def(
            "",
            "v1",
            "configmaps",
            "configmap",
            "ConfigMap",
            true,
            false,
            false,
            &["cm"],
        ),
        def(
            "",
            "v1",
            "namespaces",
            "namespace",
            "Namespace",
            false,
            true,
            false,
            &["ns"],
        ),
        def(
            "",
            "v1",
            "nodes",
            "node",
            "Node",
            false,
            true,
            false,
            &["no"],
        ),
        // events.k8s.io/v1 is another view of the same stored core events (read-only here).
        ResourceDef {
            field_selectors: EVENT_V1_FIELDS,
            ..def(
                "events.k8s.io",
                "v1",
                "events",
                "event",
                "Event",
                true,
                false,
                false,
                &["ev"],
            )
        },
        def(
            "apps",
            "v1",
            "deployments",
            "deployment",
            "Deployment",
            true,
            true,
            false,
            &["deploy"],
        ),
        def(
            "apps",
            "v1",
            "replicasets",
            "replicaset",
            "ReplicaSet",
            true,
            true,
            false,
            &["rs"],
        ),
        def(
            "apps",
            "v1",
            "statefulsets",
            "statefulset",
            "StatefulSet",
            true,
            true,
            false,
            &["sts"],
        ),
        def(
            "apps",
            "v1",
            "daemonsets",
            "daemonset",
            "DaemonSet",
            true,
            true,
            false,
            &["ds"],
        ),
    ];
    if chaos_mesh {
        // Chaos kinds have NO status subresource (status is written with the object);
        // plurals are the CRDs' own, not English plurals.
        let g = CHAOS_MESH_GROUP;
        defs.extend([
            def(
                g,
                "v1alpha1",
                "stresschaos",
                "stresschaos",
                "StressChaos",
                true,
                false,
                true,
                &[],
            ),
            def(
                g,
                "v1alpha1",
                "networkchaos",
                "networkchaos",
                "NetworkChaos",
                true,
                false,
                true,
                &[],
            ),
            def(
                g,
                "v1alpha1",
                "podchaos",
                "podchaos",
                "PodChaos",
                true,
                false,
                true,
                &[],
            ),
            def(
                g,
                "v1alpha1",
                "iochaos",
                "iochaos",
                "IOChaos",
                true,
                false,
                true,
                &[],
            ),
            def(
                g,
                "v1alpha1",
                "httpchaos",
                "httpchaos",
                "HTTPChaos",
                true,
                false,
                true,
                &[],
            ),
            def(
                g,
                "v1alpha1",
                "dnschaos",
                "dnschaos",
                "DNSChaos",
                true,
                false,
                true,
                &[],
            ),
            def(
                g,
                "v1alpha1",
                "schedules",
                "schedule",
                "Schedule",
                true,
                false,
                true,
                &[],
            ),
            def(
                g,
                "v1alpha1",
                "workflows",
                "workflow",
                "Workflow",
                true,
                true,
                true,
                &["wf"],
            ),
        ]);
    }
    if chaosblade {
        defs.push(def(
            CHAOSBLADE_GROUP,
            "v1alpha1",
            "chaosblades",
            "chaosblade",
            "ChaosBlade",
            false,
            true,
            true,
            &["blade"],
        ));
    }
    defs
}

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.1",
        "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
        "gitTreeState": "clean",
        "buildDate": "2025-05-15T08:19:08Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub fn api_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server }]
    })
}

fn groups(defs: &[ResourceDef]) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for d in defs.iter().filter(|d| !d.group.is_empty()) {
        if !out.contains(&(d.group, d.version)) {
            out.push((d.group, d.version));
        }
    }
    out
}

fn group_json(group: &str, version: &str) -> Value {
    let gv = json!({ "groupVersion": format!("{group}/{version}"), "version": version });
    json!({ "name": group, "versions": [gv.clone()], "preferredVersion": gv })
}

pub fn api_group_list(defs: &[ResourceDef]) -> Value {
    let groups: Vec<Value> = groups(defs)
        .into_iter()
        .map(|(g, v)| group_json(g, v))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

pub fn api_group(defs: &[ResourceDef], group: &str) -> Option<Value> {
    let (g, v) = groups(defs).into_iter().find(|(g, _)| *g == group)?;
    let mut doc = group_json(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn api_resource_list(defs: &[ResourceDef], group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for d in defs
        .iter()
        .filter(|d| d.group == group && d.version == version)
    {
        let mut r = json!({
            "name": d.plural,
            "singularName": d.singular,
            "namespaced": d.namespaced,
            "kind": d.kind,
            "verbs": VERBS,
        });
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        resources.push(r);
        if d.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", d.plural), "singularName": "", "namespaced": d.namespaced,
                "kind": d.kind, "verbs": ["get", "patch", "update"],
            }));
        }
        if d.plural == "pods" {
            resources.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
            resources.push(json!({"name": "pods/portforward", "singularName": "", "namespaced": true, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}));
        }
    }
    if resources.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": if group.is_empty() { version.to_string() } else { format!("{group}/{version}") },
        "resources": resources,
    }))
}
