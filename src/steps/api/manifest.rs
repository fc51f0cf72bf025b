//! Kubernetes manifests in YAML or JSON (kube-apply files and strings, a chaos-mesh `file:`),
//! read with the plan's spanned YAML reader so that a broken manifest is reported at
//! `file:line:col` — by `ttplan validate` as well as when the step runs.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::diag::{Code, PlanDiag, PlanErrors, SourceFile, Span};
use crate::plan::node::{parse_yaml_stream, Node, Value as NodeValue};
pub use crate::plan::PlanFolder;

/// Every object of a (multi-document) YAML stream: documents that are mappings and the items
/// of documents that are lists; empty documents and null items are skipped.
///
/// # Errors
/// YAML syntax errors, and documents or items that are not objects, each with its location.
pub fn objects(file: &Arc<SourceFile>) -> Result<Vec<Value>, PlanErrors> {
    let mut out = Vec::new();
    let mut errs = PlanErrors::default();
    for (i, doc) in parse_yaml_stream(file)?.iter().enumerate() {
        match &doc.value {
            NodeValue::Null => {}
            NodeValue::Map(_) => out.push(doc.to_json()),
            NodeValue::Seq(items) => {
                for item in items {
                    match &item.value {
                        NodeValue::Null => {}
                        NodeValue::Map(_) => out.push(item.to_json()),
                        _ => errs.push(not_an_object(
                            item,
                            &format!("an item of document {}", i + 1),
                        )),
                    }
                }
            }
            _ => errs.push(not_an_object(doc, &format!("document {}", i + 1))),
        }
    }
    errs.into_result(out)
}

/// The one object a file holds (a chaos-mesh `file:`), with its spans for further checks.
///
/// # Errors
/// Syntax errors, an empty file, several documents, or a document that is not a mapping.
pub fn one_object(file: &Arc<SourceFile>) -> Result<Node, PlanErrors> {
    let docs = parse_yaml_stream(file)?;
    let mut docs = docs
        .into_iter()
        .filter(|d| !matches!(d.value, NodeValue::Null));
    let Some(doc) = docs.next() else {
        return Err(PlanDiag::new(
            Code::InvalidValue,
            format!("{}: holds no object", file.display),
            None,
        )
        .into());
    };
    if let Some(second) = docs.next() {
        return Err(PlanDiag::new(
            Code::InvalidValue,
            "a manifest file here holds exactly one object",
            Some(&second.span),
        )
        .label("second document starts here")
        .into());
    }
    match doc.value {
        NodeValue::Map(_) => Ok(doc),
        _ => Err(not_an_object(&doc, "the document").into()),
    }
}

fn not_an_object(node: &Node, what: &str) -> PlanDiag {
    PlanDiag::new(
        Code::InvalidValue,
        format!("{what} is not an object (found {})", node.type_name()),
        Some(&node.span),
    )
    .label("expected a mapping with apiVersion, kind, metadata")
}

/// Reads a file the plan names, for `ttplan validate`: an unreadable file is reported at `at`
/// (the plan field naming it).
///
/// # Errors
/// The file cannot be read or is not UTF-8.
pub fn read_named(path: &Path, display: &str, at: &Span) -> Result<Arc<SourceFile>, PlanErrors> {
    std::fs::read_to_string(path)
        .map(|text| SourceFile::new(display, Some(path.to_path_buf()), text))
        .map_err(|e| {
            PlanDiag::new(Code::Io, format!("cannot read {display}: {e}"), Some(at))
                .label("this file")
                .into()
        })
}

/// Reads a manifest file into a [`SourceFile`] named by its path.
///
/// # Errors
/// The file cannot be read or is not UTF-8.
pub fn read(path: &Path) -> Result<Arc<SourceFile>, PlanErrors> {
    std::fs::read_to_string(path)
        .map(|text| source(path, text))
        .map_err(|e| io_error(path, &e))
}

/// [`read`], on tokio's blocking pool: for steps running on the async threads.
///
/// # Errors
/// As [`read`].
pub async fn read_async(path: &Path) -> Result<Arc<SourceFile>, PlanErrors> {
    tokio::fs::read_to_string(path)
        .await
        .map(|text| source(path, text))
        .map_err(|e| io_error(path, &e))
}

/// A manifest text named by its path (or by what it is, for kube-apply's inline string).
pub fn source(path: impl AsRef<Path>, text: String) -> Arc<SourceFile> {
    let path = path.as_ref();
    SourceFile::new(path.display().to_string(), Some(path.to_path_buf()), text)
}

fn io_error(path: &Path, e: &std::io::Error) -> PlanErrors {
    PlanDiag::new(Code::Io, format!("reading {}: {e}", path.display()), None).into()
}

/// The problems as one line each (`file:line:col: message`), for a step's error.
pub fn plain(errs: &PlanErrors) -> String {
    errs.diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Arc<SourceFile> {
        SourceFile::new("m.yaml", None, t.into())
    }

    #[test]
    fn multi_document_yaml_yields_objects_and_skips_empty_documents() {
        let docs = objects(&text("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n")).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["metadata"]["name"], "b");
    }

    #[test]
    fn syntax_and_shape_errors_carry_their_location() {
        let e = objects(&text("a: 1\n---\nb: [1\n")).unwrap_err();
        assert!(plain(&e).starts_with("m.yaml:"), "{}", plain(&e));
        let e = objects(&text("a: 1\n---\njust text\n")).unwrap_err();
        assert_eq!(
            plain(&e),
            "m.yaml:3:1: document 2 is not an object (found a string)"
        );
    }

    #[test]
    fn one_object_rejects_a_second_document_and_accepts_json() {
        let e = one_object(&text("a: 1\n---\nb: 2\n")).unwrap_err();
        assert!(
            plain(&e).starts_with("m.yaml:3:1: a manifest file here holds exactly one object"),
            "{}",
            plain(&e)
        );
        let v = one_object(&text(
            "{\"kind\": \"PodChaos\", \"spec\": {\"duration\": \"30s\"}}",
        ))
        .unwrap()
        .to_json();
        assert_eq!(v["spec"]["duration"], "30s");
        assert!(one_object(&text("# nothing\n")).is_err());
    }
}
