//! Reading plan files: YAML or TOML by extension, and `extends:` chains deep-merged into one
//! document (the extending file wins; a `null` deletes an inherited key or step).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::node::{parse_document, Node, Value};
use crate::diag::{Code, PlanDiag, PlanErrors, SourceFile, Span};

/// A plan document after `extends` merging, and every file it was read from.
pub struct Loaded {
    pub root: Node,
    /// The plan file first, then its bases in the order they were read.
    pub files: Vec<Arc<SourceFile>>,
}

/// Reads `path` and every base it extends.
///
/// # Errors
/// Unreadable files, syntax errors, and bad or circular `extends`.
pub fn load_files(path: &Path) -> Result<Loaded, PlanErrors> {
    let mut files = Vec::new();
    let root = load_one(
        path,
        &path.display().to_string(),
        None,
        &mut Vec::new(),
        &mut files,
    )?;
    Ok(Loaded { root, files })
}

fn read_source(
    path: &Path,
    display: &str,
    from: Option<&Span>,
) -> Result<Arc<SourceFile>, PlanErrors> {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(SourceFile::new(display, Some(canonical), text)),
        Err(e) => {
            let what = if e.kind() == std::io::ErrorKind::InvalidData {
                "is not UTF-8 text".to_string()
            } else {
                e.to_string()
            };
            Err(PlanDiag::new(
                Code::Io,
                format!("cannot read plan file {display}: {what}"),
                from,
            )
            .label("extended here")
            .into())
        }
    }
}

fn load_one(
    path: &Path,
    display: &str,
    from: Option<&Span>,
    chain: &mut Vec<PathBuf>,
    files: &mut Vec<Arc<SourceFile>>,
) -> Result<Node, PlanErrors> {
    let file = read_source(path, display, from)?;
    let canonical = file.path.clone().unwrap_or_else(|| path.to_path_buf());
    check_not_loading(chain, &canonical, from)?;
    files.push(Arc::clone(&file));
    let node = parse_document(&file)?;
    let Value::Map(map) = &node.value else {
        let msg = if matches!(node.value, Value::Null) {
            "the plan is empty: expected a mapping with `name`, `vars` and `steps`".to_string()
        } else {
            format!("a plan must be a mapping, found {}", node.type_name())
        };
        return Err(PlanDiag::new(Code::InvalidValue, msg, Some(&node.span)).into());
    };
    let Some(extends) = map.get("extends") else {
        return Ok(node);
    };
    let bases = extends_bases(&extends.value)?;
    let merged = load_bases(&bases, canonical, display, chain, files)?;
    let mut own = node;
    if let Value::Map(m) = &mut own.value {
        m.shift_remove("extends");
    }
    Ok(match merged {
        Some(base) => Node::merge(base, own),
        None => own,
    })
}

/// An `extends` chain that comes back to a file being loaded is a cycle.
fn check_not_loading(
    chain: &[PathBuf],
    canonical: &PathBuf,
    from: Option<&Span>,
) -> Result<(), PlanErrors> {
    if chain.contains(canonical) {
        let cycle: Vec<String> = chain
            .iter()
            .chain(std::iter::once(canonical))
            .map(|p| p.display().to_string())
            .collect();
        return Err(PlanDiag::new(
            Code::Extends,
            format!("`extends` goes round in a circle: {}", cycle.join(" → ")),
            from,
        )
        .label("extends a file that is already being loaded")
        .into());
    }
    Ok(())
}

/// `extends:` as the list of base paths' nodes.
fn extends_bases(extends: &Node) -> Result<Vec<&Node>, PlanErrors> {
    match &extends.value {
        Value::Str(_) => Ok(vec![extends]),
        Value::Seq(items) => Ok(items.iter().collect()),
        _ => Err(PlanDiag::new(
            Code::Extends,
            format!(
                "`extends` takes a path or a list of paths, found {}",
                extends.type_name()
            ),
            Some(&extends.span),
        )
        .into()),
    }
}

/// Loads the bases a file extends (relative to it) and merges them in order; `None` when the
/// list is empty.
fn load_bases(
    bases: &[&Node],
    canonical: PathBuf,
    display: &str,
    chain: &mut Vec<PathBuf>,
    files: &mut Vec<Arc<SourceFile>>,
) -> Result<Option<Node>, PlanErrors> {
    let dir = canonical
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let display_dir = Path::new(display)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    chain.push(canonical);
    let mut merged: Option<Node> = None;
    let mut errors = PlanErrors::default();
    for base in bases.iter().copied() {
        let Some(rel) = base.as_str() else {
            errors.push(PlanDiag::new(
                Code::Extends,
                "`extends` entries must be paths",
                Some(&base.span),
            ));
            continue;
        };
        let base_display = display_dir.join(rel).display().to_string();
        match load_one(
            &dir.join(rel),
            &base_display,
            Some(&base.span),
            chain,
            files,
        ) {
            Ok(n) => {
                merged = Some(match merged {
                    Some(m) => Node::merge(m, n),
                    None => n,
                })
            }
            Err(e) => errors.extend(e),
        }
    }
    chain.pop();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(merged)
}
