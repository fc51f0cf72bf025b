//! Where a collector's backend is: the plan's `endpoint`, else an environment variable (the
//! step's `env:` first), else a labelled Service in the cluster. The answer says which, for
//! the manifest.

use crate::kube::discovery::{find_service, ServiceQuery};
use crate::steps::{StepCtx, StepError};

/// Resolves a backend URL; `what` names it in messages ("SkyWalking").
///
/// # Errors
/// When no source gives an endpoint, naming every source tried.
pub async fn resolve_endpoint(
    ctx: &StepCtx,
    from_plan: Option<&str>,
    env_var: &str,
    query: &ServiceQuery,
    what: &str,
) -> Result<(String, String), StepError> {
    let clean = |s: &str| s.trim().trim_end_matches('/').to_string();
    if let Some(e) = from_plan.filter(|e| !e.trim().is_empty()) {
        return Ok((clean(e), "plan".into()));
    }
    if let Some(e) = ctx.env().get(env_var).filter(|e| !e.trim().is_empty()) {
        return Ok((clean(e), format!("env {env_var} (step env)")));
    }
    if let Ok(e) = std::env::var(env_var) {
        if !e.trim().is_empty() {
            return Ok((clean(&e), format!("env {env_var}")));
        }
    }
    let why = match ctx.kube().await {
        Ok(kube) => match find_service(kube, query).await {
            Ok(Some((url, how))) => return Ok((url, how)),
            Ok(None) => "no matching Service in the cluster".to_string(),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    Err(StepError::failed(format!(
        "no {what} endpoint: set `endpoint:` or {env_var} ({why})"
    )))
}
