//! Reading a campaign file and expanding it into its experiments (plans × matrix × repeat).

use std::path::{Path, PathBuf};

use super::model::CampaignFile;
use crate::diag::{did_you_mean, Code, PlanDiag, PlanErrors, SourceFile};
use crate::plan::node::{parse_document, Node, Value};
use crate::plan::node_de::from_node;

/// One experiment of a campaign, before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Experiment {
    /// Stable identity across `--resume`: plan, sets and repeat number.
    pub key: String,
    /// The plan path as the campaign names it (relative to the campaign file's folder).
    pub plan: PathBuf,
    /// Where the plan file is.
    pub plan_path: PathBuf,
    /// `--set` values: the campaign's `set`, then this matrix combination.
    pub sets: Vec<String>,
    /// 1-based repeat number.
    pub repeat: u32,
}

pub struct Campaign {
    pub file: PathBuf,
    pub name: String,
    pub sha256: String,
    pub spec: CampaignFile,
    pub experiments: Vec<Experiment>,
}

/// Reads `path`, checks its fields and expands its experiments.
///
/// # Errors
/// Every problem, located in the campaign file.
pub fn load_campaign(path: &Path) -> Result<Campaign, PlanErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        PlanErrors::from(PlanDiag::new(
            Code::Io,
            format!("cannot read campaign file {}: {e}", path.display()),
            None,
        ))
    })?;
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let file = SourceFile::new(path.display().to_string(), Some(canonical.clone()), text);
    let root = parse_document(&file)?;
    let spec = read_spec(&root)?;
    let mut errs = PlanErrors::default();
    let dir = canonical.parent().unwrap_or(Path::new(".")).to_path_buf();
    let plans = find_plans(&spec, &root, &dir, &mut errs);
    check_counts(&spec, &root, &mut errs);
    let experiments = expand(&spec, &plans);
    let name = spec.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    errs.into_result(Campaign {
        file: canonical,
        name,
        sha256: crate::engine::manifest::sha256_bytes(file.text.as_bytes()),
        spec,
        experiments,
    })
}

/// The campaign's fields, typed; an unknown, missing or wrong field located.
fn read_spec(root: &Node) -> Result<CampaignFile, PlanErrors> {
    if !matches!(root.value, Value::Map(_)) {
        return Err(PlanDiag::new(
            Code::InvalidValue,
            format!("a campaign must be a mapping, found {}", root.type_name()),
            Some(&root.span),
        )
        .into());
    }
    from_node(root).map_err(|e| {
        let span = e.span.clone();
        let diag = match &e.unknown_field {
            Some((field, expected)) => PlanDiag::new(
                Code::UnknownField,
                format!("unknown field `{field}` in campaign"),
                span.as_ref(),
            )
            .label("not a known field")
            .help(
                did_you_mean(field, expected.iter().copied())
                    .unwrap_or_else(|| format!("known fields: {}", expected.join(", "))),
            ),
            None if e.missing_field => {
                PlanDiag::new(Code::MissingField, format!("campaign: {e}"), span.as_ref())
                    .label("in this mapping")
            }
            None => PlanDiag::new(Code::InvalidValue, format!("campaign: {e}"), span.as_ref())
                .label("this value"),
        };
        PlanErrors::from(diag)
    })
}

/// The plan files `plans` names, relative to `dir` and in full; a pattern matching nothing is
/// an error at its entry.
fn find_plans(
    spec: &CampaignFile,
    root: &Node,
    dir: &Path,
    errs: &mut PlanErrors,
) -> Vec<(PathBuf, PathBuf)> {
    let plan_nodes: Vec<&Node> = match root.get("plans").map(|n| &n.value) {
        Some(Value::Seq(items)) => items.iter().collect(),
        _ => Vec::new(),
    };
    let mut plans: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (pattern, node) in spec.plans.iter().zip(&plan_nodes) {
        let matches = expand_glob(dir, pattern);
        if matches.is_empty() {
            errs.push(
                PlanDiag::new(
                    Code::Io,
                    format!(
                        "`{pattern}` names no plan file (relative to {})",
                        dir.display()
                    ),
                    Some(&node.span),
                )
                .label("matches nothing"),
            );
        }
        plans.extend(matches);
    }
    plans
}

/// Settings under which no experiment would run: no plans, `repeat: 0`, a matrix variable
/// without values.
fn check_counts(spec: &CampaignFile, root: &Node, errs: &mut PlanErrors) {
    if spec.plans.is_empty() {
        errs.push(
            PlanDiag::new(
                Code::InvalidValue,
                "`plans` is empty",
                root.get("plans").map(|n| &n.span),
            )
            .label("name at least one plan"),
        );
    }
    if spec.repeat == 0 {
        errs.push(
            PlanDiag::new(
                Code::InvalidValue,
                "`repeat` must be at least 1",
                root.get("repeat").map(|n| &n.span),
            )
            .label("no experiment would run"),
        );
    }
    for (var, values) in &spec.matrix {
        if values.is_empty() {
            let span = root.get("matrix").and_then(|m| m.get(var)).map(|n| &n.span);
            errs.push(
                PlanDiag::new(
                    Code::InvalidValue,
                    format!("matrix `{var}` has no values"),
                    span,
                )
                .label("no experiment would run"),
            );
        }
    }
}

/// Every plan × matrix combination × repeat, in that order, with the campaign's `set` first.
fn expand(spec: &CampaignFile, plans: &[(PathBuf, PathBuf)]) -> Vec<Experiment> {
    let combos = cartesian(&spec.matrix);
    let mut experiments = Vec::new();
    for (rel, full) in plans {
        for combo in &combos {
            for repeat in 1..=spec.repeat.max(1) {
                let mut sets: Vec<String> =
                    spec.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
                sets.extend(combo.iter().cloned());
                experiments.push(Experiment {
                    key: format!("{}|{}|#{repeat}", rel.display(), combo.join(",")),
                    plan: rel.clone(),
                    plan_path: full.clone(),
                    sets,
                    repeat,
                });
            }
        }
    }
    experiments
}

/// Matches of one `plans` entry: (as written relative to `dir`, full path), sorted.
fn expand_glob(dir: &Path, pattern: &str) -> Vec<(PathBuf, PathBuf)> {
    let full = dir.join(pattern);
    let Ok(paths) = glob::glob(&full.to_string_lossy()) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, PathBuf)> = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.strip_prefix(dir)
                    .map(Path::to_path_buf)
                    .unwrap_or(p.clone()),
                p,
            )
        })
        .collect();
    out.sort();
    out
}

/// Every combination of matrix values as `var=value` lists, keys in name order.
fn cartesian(matrix: &std::collections::BTreeMap<String, Vec<String>>) -> Vec<Vec<String>> {
    let mut combos: Vec<Vec<String>> = vec![Vec::new()];
    for (var, values) in matrix {
        combos = combos
            .iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push(format!("{var}={v}"));
                    c
                })
            })
            .collect();
    }
    combos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_is_a_cartesian_product_in_key_order() {
        let mut m = std::collections::BTreeMap::new();
        m.insert("target".to_string(), vec!["a".to_string(), "b".to_string()]);
        m.insert(
            "fault".to_string(),
            vec!["cpu".to_string(), "io".to_string(), "net".to_string()],
        );
        let c = cartesian(&m);
        assert_eq!(c.len(), 6);
        assert_eq!(c[0], vec!["fault=cpu", "target=a"]);
        assert_eq!(c[1], vec!["fault=cpu", "target=b"]);
        assert_eq!(c[5], vec!["fault=net", "target=b"]);
        assert_eq!(cartesian(&Default::default()), vec![Vec::<String>::new()]);
    }

    #[test]
    fn experiments_run_plan_by_plan_then_matrix_then_repeat_with_the_campaign_set_first() {
        let spec: CampaignFile = serde_json::from_value(serde_json::json!({
            "plans": ["*.yaml"],
            "repeat": 2,
            "set": {"load": "low"},
            "matrix": {"fault": ["cpu", "io"]},
        }))
        .unwrap();
        let plans = [
            (PathBuf::from("a.yaml"), PathBuf::from("/c/a.yaml")),
            (PathBuf::from("b.yaml"), PathBuf::from("/c/b.yaml")),
        ];
        let exps = expand(&spec, &plans);
        let keys: Vec<&str> = exps.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "a.yaml|fault=cpu|#1",
                "a.yaml|fault=cpu|#2",
                "a.yaml|fault=io|#1",
                "a.yaml|fault=io|#2",
                "b.yaml|fault=cpu|#1",
                "b.yaml|fault=cpu|#2",
                "b.yaml|fault=io|#1",
                "b.yaml|fault=io|#2",
            ]
        );
        assert_eq!(exps[2].sets, ["load=low", "fault=io"]);
        assert_eq!(exps[7].plan_path, PathBuf::from("/c/b.yaml"));
        assert_eq!(exps[7].repeat, 2);
    }
}
