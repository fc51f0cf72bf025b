//! Where a collector's backend is: the plan's `endpoint`, else an environment variable (the
//! step's `env:` first), else a labelled Service in the cluster. The answer says which, for
//! the manifest.

use crate::kube::discovery::{find_service, ServiceQuery};
use crate::steps::api::{StepCtx, StepError};

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
    let (url, source) = match configured(ctx, from_plan, env_var) {
        Some(found) => found,
        None => discover(ctx, env_var, query, what).await?,
    };
    check_http_url(&url)
        .map_err(|e| StepError::failed(format!("{what} endpoint `{url}` (from {source}): {e}")))?;
    Ok((url, source))
}

/// An absolute http(s) URL.
///
/// # Errors
/// What is wrong with it.
pub fn check_http_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", u.scheme()));
    }
    Ok(())
}

/// The plan's value, else the step's `env:`, else ttplan's environment.
fn configured(ctx: &StepCtx, from_plan: Option<&str>, env_var: &str) -> Option<(String, String)> {
    let clean = |s: &str| s.trim().trim_end_matches('/').to_string();
    if let Some(e) = from_plan.filter(|e| !e.trim().is_empty()) {
        return Some((clean(e), "plan".into()));
    }
    if let Some(e) = ctx.env().get(env_var).filter(|e| !e.trim().is_empty()) {
        return Some((clean(e), format!("step env {env_var}")));
    }
    match std::env::var(env_var) {
        Ok(e) if !e.trim().is_empty() => Some((clean(&e), format!("env {env_var}"))),
        _ => None,
    }
}

async fn discover(
    ctx: &StepCtx,
    env_var: &str,
    query: &ServiceQuery,
    what: &str,
) -> Result<(String, String), StepError> {
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
