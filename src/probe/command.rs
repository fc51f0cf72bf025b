//! Command probes: the command runs through the engine's child-process code (own process
//! group, killed on cancel), its output captured to judge it and appended to the step log.

use serde_json::json;

use super::{Evaluation, ProbeSpec};
use crate::steps::api::process::{run_logged, Spawn};
use crate::steps::api::{StepCtx, StepError};

/// # Errors
/// Cancellation; the capture file cannot be created.
pub async fn evaluate(spec: &ProbeSpec, ctx: &StepCtx) -> Result<Evaluation, StepError> {
    let Some(command) = &spec.run else {
        return Ok(Evaluation::unknown("no `run`"));
    };
    let capture = tempfile::NamedTempFile::new()
        .map_err(StepError::io("creating a file for the probe's output"))?;
    let workdir = spec
        .workdir
        .as_ref()
        .map_or_else(|| ctx.plan_dir().to_path_buf(), |w| ctx.plan_dir().join(w));
    let finished = run_logged(Spawn {
        command,
        workdir: &workdir,
        env: ctx
            .env()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        log: capture.path(),
        groups: ctx.child_groups(),
        cancel: ctx.cancel_token(),
    })
    .await;
    let output = std::fs::read(capture.path())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if !output.is_empty() {
        ctx.append_log(&output)?;
    }
    let finished = match finished {
        Ok(f) => f,
        Err(StepError::Cancelled) => return Err(StepError::Cancelled),
        Err(e) => return Ok(Evaluation::failed(serde_json::Value::Null, e.to_string())),
    };
    let Some(code) = finished.code() else {
        return Ok(Evaluation::failed(
            serde_json::Value::Null,
            finished.describe(),
        ));
    };
    let value = json!({ "exit_code": code });
    let code_problem = match (&spec.expect, spec.exit_code) {
        (Some(e), None) => e.miss(f64::from(code)).map(|m| format!("exit code {m}")),
        (_, want) => {
            let want = want.unwrap_or(0);
            (code != want).then(|| format!("exit code {code}, expected {want}"))
        }
    };
    if let Some(p) = code_problem {
        return Ok(Evaluation::failed(value, p));
    }
    if let Some(re) = &spec.output_regex {
        match regex::Regex::new(re) {
            Ok(r) if !r.is_match(&output) => {
                return Ok(Evaluation::failed(
                    value,
                    format!("the output does not match /{re}/"),
                ))
            }
            Ok(_) => {}
            Err(e) => return Ok(Evaluation::unknown(format!("`output_regex`: {e}"))),
        }
    }
    Ok(Evaluation::new(value, Some(true), None))
}
