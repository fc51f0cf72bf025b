//! What a fault step asked for ([`FaultParams`], kept as `params` in the fault ledger), what
//! its injector reports when the fault takes hold ([`InjectionDetails`], `details`) and what
//! recovery observes ([`RecoveryReport`], `recovery_details`): the typed contract between the chaos step kinds, which write them, and
//! `engine::labels`, which turns them into the ground-truth labels.
//!
//! The JSON shape is the one ledgers and manifests always had (the field names and their order
//! are part of the published `faults.json`), so old ledgers read back and new ones are
//! byte-compatible.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the plan asked for, per mechanism (the labels' `parameters`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FaultParams {
    ChaosBlade(ChaosBladeParams),
    ChaosMesh(ChaosMeshParams),
    Shell(ShellParams),
    /// Applied manifests to delete at the end (`kube-apply`, not a fault).
    Teardown(TeardownParams),
    /// A shape this version does not know, kept as it was.
    Other(Value),
}

impl FaultParams {
    /// The fault's kind as the plan named it (`PodChaos`, `chaosblade/jvm/delay`).
    pub fn kind(&self) -> Option<&str> {
        match self {
            Self::ChaosBlade(p) => Some(&p.kind),
            Self::ChaosMesh(p) => Some(&p.kind),
            Self::Shell(_) | Self::Teardown(_) | Self::Other(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosMeshParams {
    /// The object's `kind`.
    pub kind: String,
    /// The object's `spec`, as the plan wrote it.
    pub spec: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosBladeParams {
    /// `chaosblade/<target>/<action>`.
    pub kind: String,
    pub target: String,
    pub action: String,
    pub flags: IndexMap<String, String>,
    pub service: String,
    pub container: String,
    pub process: String,
}

/// A `shell` step with a `recover` command: both commands as the plan gave them (a string
/// for `sh -c`, or an argv list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShellParams {
    pub run: Value,
    pub recover: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeardownParams {
    /// How many objects were applied.
    pub objects: usize,
}

/// What the injector reported: the object it created, where the fault landed, and when the
/// chaos controller itself says it was injected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InjectionDetails {
    /// Nothing beyond ttplan's own clock: a `shell` fault, or one not yet injected (`null`).
    #[default]
    None,
    ChaosMesh(ChaosMeshInjection),
    ChaosBlade(ChaosBladeInjection),
    /// A shape this version does not know (a ledger written by another version), kept as it
    /// was so rewriting the ledger loses nothing.
    Other(Value),
}

impl InjectionDetails {
    /// When the controller's own records say the fault took hold.
    pub fn controller_injected_at(&self) -> Option<&str> {
        match self {
            Self::ChaosMesh(d) => d.controller_injected_at.as_deref(),
            Self::ChaosBlade(d) => d.controller_injected_at.as_deref(),
            Self::None | Self::Other(_) => None,
        }
    }

    /// The chaos object's `kind` (`PodChaos`, `ChaosBlade`).
    pub fn object_kind(&self) -> Option<&str> {
        match self {
            Self::ChaosMesh(d) => Some(&d.object.kind),
            Self::ChaosBlade(d) => Some(&d.object.kind),
            Self::None | Self::Other(_) => None,
        }
    }

    /// The chaos object's uid, when one was recorded.
    pub fn object_uid(&self) -> Option<&str> {
        match self {
            Self::ChaosMesh(d) => Some(d.object.uid.as_str()),
            Self::ChaosBlade(d) => Some(d.object.uid.as_str()),
            Self::None | Self::Other(_) => None,
        }
        .filter(|u| !u.is_empty())
    }

    /// The chaos object as the labels show it (`null` without one).
    pub fn object_json(&self) -> Value {
        let v = match self {
            Self::ChaosMesh(d) => serde_json::to_value(&d.object),
            Self::ChaosBlade(d) => serde_json::to_value(&d.object),
            Self::None | Self::Other(_) => return Value::Null,
        };
        v.unwrap_or(Value::Null)
    }

    /// Where the fault landed, as the labels show it (`null` when unknown).
    pub fn target_json(&self) -> Value {
        let v = match self {
            Self::ChaosMesh(d) => serde_json::to_value(&d.target),
            Self::ChaosBlade(d) => serde_json::to_value(&d.target),
            Self::None | Self::Other(_) => return Value::Null,
        };
        v.unwrap_or(Value::Null)
    }
}

/// A Chaos Mesh object the controller reported injected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosMeshInjection {
    pub object: ChaosMeshObject,
    pub target: ChaosMeshTarget,
    /// The earliest `Apply` in the controller's container records.
    pub controller_injected_at: Option<String>,
    /// The controller's `status.experiment.containerRecords`, as it wrote them.
    pub records: Vec<Value>,
    /// For a Schedule/Workflow: the first child whose records show the injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_child: Option<FirstChild>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosMeshObject {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub created_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosMeshTarget {
    pub namespace: String,
    /// The object's `spec.selector`, as written.
    #[serde(default)]
    pub selector: Value,
    /// The object's `spec.mode`, as written.
    #[serde(default)]
    pub mode: Value,
    /// `namespace/pod` of every pod the records name.
    pub pods: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstChild {
    pub kind: String,
    pub name: Option<String>,
    pub uid: Option<String>,
    pub pods: Vec<String>,
    pub injected_at: Option<String>,
}

/// A ChaosBlade experiment (`blade create` or the operator's CRD).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosBladeInjection {
    pub object: ChaosBladeObject,
    pub blade_uid: String,
    /// When the operator wrote the `Running` status (its managed fields), when seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_injected_at: Option<String>,
    /// The operator's `status` when it was seen `Running`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_status: Option<Value>,
    pub target: ChaosBladeTarget,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosBladeObject {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosBladeTarget {
    pub namespace: String,
    pub service: String,
    /// `namespace/pod`: the pod ttplan chose, or the ones the operator's status names.
    pub pods: Vec<String>,
    pub container: String,
}

/// What recovery observed: the controller's recovery time and records, and for a
/// Schedule/Workflow every child it spawned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecoveryReport {
    pub controller_recovered_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<ChildFault>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentTimes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<Value>>,
}

/// One child of a Schedule/Workflow: which pods, and when the controller applied and
/// recovered the fault on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildFault {
    pub kind: String,
    pub name: String,
    pub pods: Vec<String>,
    pub injected_at: Option<String>,
    pub recovered_at: Option<String>,
    /// `records` (read from the object) or `events` (rebuilt from its Events).
    pub source: String,
}

/// When a Schedule/Workflow was created and deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentTimes {
    pub created_at: Option<String>,
    pub deleted_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chaos_mesh_details_keep_their_published_shape() {
        let written = json!({
            "object": {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos", "namespace": "ts",
                       "name": "kill", "uid": "u1", "created_at": null},
            "target": {"namespace": "ts", "selector": {"labelSelectors": {"app": "a"}}, "mode": "one",
                       "pods": ["ts/a-1"]},
            "controller_injected_at": "2026-01-01T00:00:01Z",
            "records": [{"id": "ts/a-1"}],
            "first_child": {"kind": "PodChaos", "name": "kill-x", "uid": null, "pods": ["ts/a-1"],
                            "injected_at": "2026-01-01T00:00:01Z"},
        });
        let d: InjectionDetails = serde_json::from_value(written.clone()).unwrap();
        let InjectionDetails::ChaosMesh(m) = &d else {
            panic!("read as {d:?}")
        };
        assert_eq!(m.target.pods, ["ts/a-1"]);
        assert_eq!(d.controller_injected_at(), Some("2026-01-01T00:00:01Z"));
        assert_eq!(d.object_kind(), Some("PodChaos"));
        // Same keys in the same order: the bytes of faults.json do not change.
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            serde_json::to_string(&written).unwrap()
        );
    }

    #[test]
    fn chaosblade_null_and_unknown_details_round_trip() {
        let blade = json!({
            "object": {"apiVersion": "chaosblade.io/v1alpha1", "kind": "ChaosBlade", "name": "b", "uid": "u"},
            "blade_uid": "u",
            "controller_injected_at": "2026-01-01T00:00:02Z",
            "controller_status": {"phase": "Running"},
            "target": {"namespace": "ts", "service": "s", "pods": ["ts/s-1"], "container": "c"},
        });
        for written in [blade, Value::Null, json!({"something": "else"})] {
            let d: InjectionDetails = serde_json::from_value(written.clone()).unwrap();
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                serde_json::to_string(&written).unwrap()
            );
        }
        let d: InjectionDetails = serde_json::from_value(Value::Null).unwrap();
        assert_eq!(d, InjectionDetails::None);
        let d: InjectionDetails = serde_json::from_value(json!({"blade_uid": 1})).unwrap();
        assert!(matches!(d, InjectionDetails::Other(_)));
        assert_eq!(d.controller_injected_at(), None);
    }

    #[test]
    fn params_of_each_mechanism_are_told_apart_and_round_trip() {
        let cases = [
            (
                json!({"kind": "StressChaos", "spec": {"mode": "one"}}),
                Some("StressChaos"),
            ),
            (
                json!({"kind": "chaosblade/jvm/delay", "target": "jvm", "action": "delay",
                       "flags": {"time": "3000"}, "service": "s", "container": "s", "process": "java"}),
                Some("chaosblade/jvm/delay"),
            ),
            (
                json!({"run": "./inject.sh", "recover": ["./undo.sh", "-f"]}),
                None,
            ),
            (json!({"objects": 3}), None),
            (json!({"kind": 7}), None),
        ];
        for (written, kind) in cases {
            let p: FaultParams = serde_json::from_value(written.clone()).unwrap();
            assert_eq!(p.kind(), kind, "{p:?}");
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                serde_json::to_string(&written).unwrap()
            );
        }
        let p: FaultParams = serde_json::from_value(json!({"run": "x", "recover": "y"})).unwrap();
        assert!(matches!(p, FaultParams::Shell(_)));
    }

    #[test]
    fn recovery_reports_write_only_what_was_observed() {
        let blade = RecoveryReport {
            controller_recovered_at: Some("t".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&blade).unwrap(),
            r#"{"controller_recovered_at":"t"}"#
        );
        let parent = json!({
            "controller_recovered_at": null,
            "children": [{"kind": "PodChaos", "name": "c", "pods": [], "injected_at": null,
                          "recovered_at": null, "source": "events"}],
            "parent": {"created_at": null, "deleted_at": "2026-01-01T00:00:00Z"},
            "records": [],
        });
        let r: RecoveryReport = serde_json::from_value(parent.clone()).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            serde_json::to_string(&parent).unwrap()
        );
    }
}
