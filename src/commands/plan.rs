//! `ttplan plan`: what a plan would run, layer by layer, with every rendered value.

use std::fmt::Write as _;
use std::path::Path;

use chrono::Utc;

use super::load;
use crate::exit;
use crate::steps::Plan;

pub(super) fn run(path: &Path, sets: &[String]) -> u8 {
    match load(path, sets, Utc::now(), "dataset".as_ref()) {
        Ok(p) => {
            crate::out(&describe_plan(&p));
            exit::SUCCESS
        }
        Err(code) => code,
    }
}

/// `ttplan plan`: steps by DAG layer with every rendered value.
pub fn describe_plan(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "plan:     {} ({})", plan.name, plan.path.display());
    if let Some(d) = &plan.description {
        let _ = writeln!(s, "          {d}");
    }
    let _ = writeln!(s, "exp_name: {}", plan.exp_name);
    if plan.files.len() > 1 {
        let bases: Vec<&str> = plan.files[1..].iter().map(|f| f.display.as_str()).collect();
        let _ = writeln!(s, "extends:  {}", bases.join(", "));
    }
    let _ = writeln!(s, "vars:");
    for (k, v) in &plan.vars {
        let _ = writeln!(s, "  {k}: {}", v.to_json());
    }
    for (i, layer) in plan.dag.layers().iter().enumerate() {
        let _ = writeln!(s, "\nlayer {}:", i + 1);
        for name in layer {
            let step = &plan.steps[name];
            let mut flags = Vec::new();
            if step.common.always {
                flags.push("always");
            }
            if step.common.allow_failure {
                flags.push("allow_failure");
            }
            if step.deferred {
                flags.push("renders {{ steps.* / run.* }} at step start");
            }
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!("  [{}]", flags.join(", "))
            };
            let _ = writeln!(s, "  {name} ({}){flags}", step.common.kind);
            let yaml = serde_yaml_ng::to_string(&step.resolved_json()).unwrap_or_default();
            for line in yaml.lines() {
                let _ = writeln!(s, "    {line}");
            }
        }
    }
    s
}
