//! The JSON schema of plan files, generated from the model and the kind registry
//! (`ttplan schema`; committed as `schemas/plan.schema.json`, which a test keeps current).

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};

use super::{KindEntry, KINDS};
use crate::plan::model::StepCommon;

/// The schema as pretty JSON with a final newline.
pub fn plan_schema_json() -> String {
    let mut s = serde_json::to_string_pretty(&plan_schema()).unwrap_or_default();
    s.push('\n');
    s
}

pub fn plan_schema() -> Value {
    let mut g = SchemaSettings::draft2020_12().into_generator();
    let common = g.root_schema_for::<StepCommon>().to_value();
    let common_props = common
        .get("properties")
        .cloned()
        .unwrap_or_else(|| json!({}));

    let one_of: Vec<Value> = KINDS
        .iter()
        .map(|k| kind_schema(k, &mut g, &common_props))
        .collect();
    let hypothesis_probe = hypothesis_probe_schema(&one_of);
    let mut defs = Map::new();
    for (name, schema) in g.definitions() {
        defs.insert(name.clone(), schema.clone());
    }
    if let Some(Value::Object(d)) = common.get("$defs") {
        defs.extend(d.clone());
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/ttplan/ttplan/schemas/plan.schema.json",
        "title": "ttplan plan",
        "description": "One fault-injection experiment as a DAG of steps (YAML or TOML).",
        "type": "object",
        "additionalProperties": false,
        "required": ["steps"],
        "properties": {
            "name": { "type": "string", "description": "Experiment name; defaults to the file name." },
            "description": { "type": "string" },
            "extends": {
                "description": "Base plan(s) deep-merged under this one (paths relative to this file). `null` in this file deletes an inherited key or step.",
                "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ]
            },
            "vars": {
                "type": "object",
                "description": "Template variables; `--set key=value` overrides them. `exp_name` names the run's folders (default: `{{ name }}_<UTC start>`)."
            },
            "sources": {
                "type": "object",
                "description": "Source trees (name: path) whose git commit the manifest records.",
                "additionalProperties": { "type": "string" }
            },
            "steps": {
                "type": "object",
                "description": "Step name → step. Names use letters, digits, `_` and `-`.",
                "propertyNames": { "pattern": "^[A-Za-z0-9_-]+$" },
                "additionalProperties": { "oneOf": one_of }
            },
            "hypothesis": {
                "type": "object",
                "description": "Steady-state hypothesis: probe name → probe, checked before the first fault and after the last recovery (docs/probes.md).",
                "additionalProperties": hypothesis_probe
            }
        },
        "$defs": defs,
    })
}

/// One closed object per kind: the common fields plus the kind's own, `kind` fixed.
fn kind_schema(k: &KindEntry, g: &mut SchemaGenerator, common_props: &Value) -> Value {
    let kind_schema = (k.schema)(g).to_value();
    let mut props = Map::new();
    if let Value::Object(c) = common_props {
        props.extend(c.clone());
    }
    if let Some(Value::Object(p)) = kind_schema.get("properties") {
        props.extend(p.clone());
    }
    props.insert(
        "kind".into(),
        json!({ "const": k.name, "description": k.about }),
    );
    let mut required = vec![json!("kind")];
    if let Some(Value::Array(r)) = kind_schema.get("required") {
        required.extend(r.iter().cloned());
    }
    json!({
        "title": k.name,
        "description": k.about,
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// A `probe` step's schema without the fields a hypothesis probe cannot have.
fn hypothesis_probe_schema(kinds: &[Value]) -> Value {
    let Some(mut probe) = kinds.iter().find(|k| k["title"] == "probe").cloned() else {
        return json!({ "type": "object" });
    };
    if let Some(Value::Object(props)) = probe.get_mut("properties") {
        for f in [
            "kind",
            "after",
            "mode",
            "until",
            "until_event",
            "require",
            "verifies",
        ] {
            props.remove(f);
        }
    }
    if let Some(Value::Array(req)) = probe.get_mut("required") {
        req.retain(|r| r != "kind");
    }
    probe["title"] = json!("hypothesis probe");
    probe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_schema_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/plan.schema.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == plan_schema_json(),
            "{} is stale: regenerate it with `cargo run -- schema > schemas/plan.schema.json`",
            path.display()
        );
    }

    #[test]
    fn every_kind_is_in_the_schema_with_the_common_fields() {
        let s = plan_schema();
        let kinds = s["properties"]["steps"]["additionalProperties"]["oneOf"]
            .as_array()
            .unwrap();
        assert_eq!(kinds.len(), KINDS.len());
        for k in kinds {
            for f in StepCommon::FIELDS {
                assert!(
                    k["properties"].get(*f).is_some(),
                    "{} lacks {f}",
                    k["title"]
                );
            }
        }
    }
}
