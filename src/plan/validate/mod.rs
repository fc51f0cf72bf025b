//! From a merged plan document to a [`Plan`], collecting every problem on the way:
//! unknown fields and kinds, bad values, `after` naming missing steps, cycles, undefined
//! template names and runtime references to steps that do not run first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::kinds::Kinds;
use super::load::{load_files, Loaded};
use super::model::TOP_LEVEL_FIELDS;
use super::node::{Entry, Map, Node, Value};
use super::node_de::from_node;
use super::template::Templates;
use super::{LoadOptions, Plan};
use crate::diag::{Code, PlanDiag, PlanErrors, SourceFile, Span};

mod dag_checks;
mod diags;
mod hypothesis;
mod render_at_start;
mod steps;
mod vars;

use dag_checks::checked_dag;
use diags::{node_error_diag, unknown_field_diag};
use hypothesis::read_hypothesis;
pub use render_at_start::{render_at_start, RenderedStep};
use steps::read_steps;
use vars::{read_vars, resolve_vars};

/// Loads, renders and validates a plan.
///
/// # Errors
/// Every problem found, each with its location.
pub fn load_plan<K: Kinds + ?Sized>(
    path: &Path,
    opts: &LoadOptions,
    kinds: &K,
) -> Result<Plan<K::Step>, PlanErrors> {
    build_plan(load_files(path)?, path, opts, kinds)
}

/// A plan from a merged document that was stored earlier (a manifest's `plan.document`):
/// `plan_file` is where the plan was, so `plan_dir` and relative paths resolve as they did.
///
/// # Errors
/// Every problem found, each located in the stored document.
pub fn load_plan_document<K: Kinds + ?Sized>(
    document: &serde_json::Value,
    display: &str,
    plan_file: &Path,
    opts: &LoadOptions,
    kinds: &K,
) -> Result<Plan<K::Step>, PlanErrors> {
    let text = serde_json::to_string_pretty(document).unwrap_or_default();
    let file = SourceFile::new(display, Some(plan_file.to_path_buf()), text);
    let root = Node::from_json(&Span::new(&file, 0, file.text.len()), document);
    build_plan(
        Loaded {
            root,
            files: vec![file],
        },
        plan_file,
        opts,
        kinds,
    )
}

fn build_plan<K: Kinds + ?Sized>(
    loaded: Loaded,
    path: &Path,
    opts: &LoadOptions,
    kinds: &K,
) -> Result<Plan<K::Step>, PlanErrors> {
    let mut errs = PlanErrors::default();
    let root = loaded.root;
    let document = stored_document(&root);
    let Value::Map(top) = &root.value else {
        return Err(PlanDiag::new(
            Code::InvalidValue,
            "a plan must be a mapping",
            Some(&root.span),
        )
        .into());
    };
    check_top_fields(top, &mut errs);
    let plan_file = loaded.files[0]
        .path
        .clone()
        .unwrap_or_else(|| path.to_path_buf());
    let plan_dir = std::path::absolute(plan_file.parent().unwrap_or(Path::new(".")))
        .unwrap_or_else(|_| PathBuf::from("."));

    let name = read_name(top, path, &mut errs);
    let description = top
        .get("description")
        .and_then(|e| e.value.as_str())
        .map(str::to_string);
    let sources = read_sources(top.get("sources"), &plan_dir, &mut errs);

    let templates = Templates::new(opts.now);
    let mut ctx = builtin_context(&name, opts, &plan_dir);

    let declared = read_vars(top.get("vars"), &opts.sets, &mut errs);
    let vars = resolve_vars(declared, &templates, &mut ctx, &mut errs);
    let exp_name = vars
        .get("exp_name")
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(n) = vars.get("exp_name") {
        check_exp_name(n, &mut errs);
    }

    let steps = read_steps(
        top.get("steps"),
        &root.span,
        &templates,
        &ctx,
        kinds,
        &mut errs,
    );
    let dag = checked_dag(top.get("steps"), &steps, &templates, &mut errs);
    super::check_files::check_named_files(&steps, &plan_dir, &loaded.files[0], &mut errs);
    let warnings = steps
        .values()
        .flat_map(|s| super::deprecated::warnings(s.kind, &s.fields))
        .collect();
    let hypothesis = read_hypothesis(top.get("hypothesis"), &templates, &ctx, kinds, &mut errs);

    errs.into_result(Plan {
        path: path.to_path_buf(),
        plan_dir,
        files: loaded.files,
        document,
        name,
        description,
        exp_name,
        vars,
        sources,
        steps,
        hypothesis,
        dag,
        templates,
        context: ctx,
        warnings,
    })
}

/// What `ttplan rerun` renders again: the merged document, its `extends` already applied.
fn stored_document(root: &Node) -> serde_json::Value {
    let mut document = root.to_json();
    if let Some(m) = document.as_object_mut() {
        m.remove("extends");
    }
    document
}

fn check_top_fields(top: &Map, errs: &mut PlanErrors) {
    for (key, entry) in top {
        if !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
            errs.push(unknown_field_diag(
                key,
                Some(&entry.key_span),
                TOP_LEVEL_FIELDS.iter().copied(),
                "plan",
            ));
        }
    }
}

/// `name:`, or the plan file's stem when there is none.
fn read_name(top: &Map, path: &Path, errs: &mut PlanErrors) -> String {
    match top.get("name").map(|e| &e.value) {
        Some(n) => match n.as_str() {
            Some(s) if !s.trim().is_empty() => s.to_string(),
            _ => {
                errs.push(PlanDiag::new(
                    Code::InvalidValue,
                    "`name` must be a non-empty string",
                    Some(&n.span),
                ));
                String::new()
            }
        },
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// The template context before vars: the names every plan can read.
fn builtin_context(
    name: &str,
    opts: &LoadOptions,
    plan_dir: &Path,
) -> BTreeMap<String, serde_json::Value> {
    let mut ctx = BTreeMap::new();
    ctx.insert("name".into(), name.into());
    ctx.insert("run_id".into(), opts.run_id.clone().into());
    ctx.insert("plan_dir".into(), plan_dir.display().to_string().into());
    let out_dir = std::path::absolute(&opts.out_dir).unwrap_or_else(|_| opts.out_dir.clone());
    ctx.insert("out_dir".into(), out_dir.display().to_string().into());
    ctx
}

fn read_sources(
    node: Option<&Entry>,
    plan_dir: &Path,
    errs: &mut PlanErrors,
) -> IndexMap<String, PathBuf> {
    let mut out = IndexMap::new();
    let Some(entry) = node else { return out };
    match from_node::<IndexMap<String, PathBuf>>(&entry.value) {
        Ok(m) => {
            for (k, p) in m {
                out.insert(k, plan_dir.join(p));
            }
        }
        Err(e) => errs.push(node_error_diag(e, &[], "`sources` (name: path)")),
    }
    out
}

fn check_exp_name(n: &Node, errs: &mut PlanErrors) {
    let s = n.as_str().unwrap_or_default();
    let bad = s.is_empty() || s == "." || s == ".." || s.contains(['/', '\\', '\0']);
    if bad {
        errs.push(
            PlanDiag::new(
                Code::InvalidValue,
                format!("exp_name `{s}` cannot be used as a folder name"),
                Some(&n.span),
            )
            .label("exp_name")
            .help("use letters, digits, `_`, `-` and `.` (no `/`)"),
        );
    }
}
