//! `ttplan rerun MANIFEST`: the plan a manifest recorded, run again under a new exp name.
//!
//! The manifest stores the merged plan document before templating (`plan.document`) and every
//! var as it resolved (`vars`). A rerun renders that document with those var values fixed (and
//! `now_utc()` at the recorded start), so every value is the one the recorded run used, whatever
//! happened to the plan files since — only `exp_name` (and `run_id`) are new.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::launch::{new_run_id, LaunchError};
use crate::plan::template::Templates;
use crate::plan::{load_plan_document, LoadOptions};
use crate::steps::{Plan, KINDS};

/// Reads `manifest` and builds its plan, named `exp_name` (default: the recorded name with
/// `_rerun_<UTC now>`).
///
/// # Errors
/// An unreadable manifest, one without a stored document, or a document that no longer loads
/// (e.g. a step kind this ttplan does not have).
pub fn plan_from_manifest(
    manifest: &Path,
    exp_name: Option<&str>,
    out: &Path,
    now: DateTime<Utc>,
) -> Result<Plan, LaunchError> {
    let err = |m: String| LaunchError::Other {
        code: crate::exit::INVALID,
        message: m,
    };
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| err(format!("cannot read {}: {e}", manifest.display())))?;
    let m: Value = serde_json::from_str(&text)
        .map_err(|e| err(format!("{} is not JSON: {e}", manifest.display())))?;
    let Some(document) = m.pointer("/plan/document").filter(|d| d.is_object()) else {
        return Err(err(format!(
            "{} has no `plan.document` (written by a ttplan before 0.1 reruns existed); run its plan file instead",
            manifest.display()
        )));
    };
    let old_name = m
        .pointer("/run/exp_name")
        .and_then(Value::as_str)
        .unwrap_or("rerun");
    let started_at: DateTime<Utc> = m
        .pointer("/run/started_at")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(now);
    let plan_path = PathBuf::from(
        m.pointer("/plan/path")
            .and_then(Value::as_str)
            .unwrap_or("plan.yaml"),
    );
    let plan_dir = m
        .pointer("/plan/dir")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.parent().unwrap_or(Path::new(".")).to_path_buf());
    let plan_file = plan_dir.join(plan_path.file_name().unwrap_or("plan.yaml".as_ref()));

    let new_name = exp_name.map_or_else(
        || format!("{old_name}_rerun_{}", now.format("%Y%m%dT%H%M%SZ")),
        str::to_string,
    );
    let mut vars: serde_json::Map<String, Value> = m
        .get("vars")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    vars.insert("exp_name".into(), Value::String(new_name));
    let mut document = document.clone();
    if let Some(d) = document.as_object_mut() {
        let fixed: serde_json::Map<String, Value> = vars
            .into_iter()
            .map(|(k, mut v)| {
                literal(&mut v);
                (k, v)
            })
            .collect();
        d.insert("vars".into(), Value::Object(fixed));
    }
    let display = format!("{} (plan.document)", manifest.display());
    load_plan_document(
        &document,
        &display,
        &plan_file,
        &LoadOptions {
            sets: Vec::new(),
            run_id: new_run_id(now),
            now: started_at,
            out_dir: out.to_path_buf(),
        },
        KINDS,
    )
    .map_err(LaunchError::Plan)
}

/// A resolved value must not render again: template-looking text is wrapped in a raw block.
fn literal(v: &mut Value) {
    match v {
        Value::String(s) if Templates::is_template(s) => {
            *s = format!("{{% raw %}}{s}{{% endraw %}}");
        }
        Value::Array(a) => a.iter_mut().for_each(literal),
        Value::Object(o) => o.values_mut().for_each(literal),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_values_that_look_like_templates_stay_literal() {
        let mut v = serde_json::json!({"a": "x {{ y }}", "b": ["{% if %}"], "c": 3});
        literal(&mut v);
        assert_eq!(v["a"], "{% raw %}x {{ y }}{% endraw %}");
        assert_eq!(v["b"][0], "{% raw %}{% if %}{% endraw %}");
        assert_eq!(v["c"], 3);
    }
}
