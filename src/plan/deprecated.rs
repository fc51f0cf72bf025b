//! Field names the collectors used before they shared one vocabulary (`output`, `concurrency`,
//! `start`, `require: none`). The old names still parse (serde aliases on the configs) for one release;
//! this pass turns each use into a warning that `validate` and `run` print, located at the field.

use crate::diag::Span;
use crate::plan::node::{Node, Value};

/// (kind, old field, new field).
const RENAMED_FIELDS: &[(&str, &str, &str)] = &[
    ("collect-coverage", "out", "output"),
    ("coverage-report", "out", "output"),
    ("collect-logs", "dir", "output"),
    ("collect-logs", "since", "start"),
    ("collect-traces", "path", "output"),
    ("collect-traces", "workers", "concurrency"),
];

/// (kind, field, old value, new value).
const RENAMED_VALUES: &[(&str, &str, &str, &str)] =
    &[("collect-coverage", "require", "never", "none")];

/// `file:line:col: warning: …` for every deprecated name a step's mapping uses.
pub(super) fn warnings(kind: &str, step: &Node) -> Vec<String> {
    let Value::Map(map) = &step.value else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let say = |span: &Span, what: String| format!("{}: warning: {what}", span.location());
    for (k, old, new) in RENAMED_FIELDS {
        if *k == kind {
            if let Some(e) = map.get(*old) {
                out.push(say(
                    &e.key_span,
                    format!("`{old}` is deprecated and will be removed; call it `{new}`"),
                ));
            }
        }
    }
    for (k, field, old, new) in RENAMED_VALUES {
        if *k == kind {
            if let Some(e) = map.get(*field).filter(|e| e.value.as_str() == Some(old)) {
                out.push(say(
                    &e.value.span,
                    format!("`{field}: {old}` is deprecated and will be removed; write `{field}: {new}`"),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;
    use crate::plan::node::parse_yaml;

    #[test]
    fn old_names_are_located_and_new_ones_are_quiet() {
        let f = SourceFile::new(
            "p.yaml",
            None,
            "kind: collect-traces\nworkers: 4\npath: t.jsonl\n".into(),
        );
        let w = warnings("collect-traces", &parse_yaml(&f).unwrap());
        assert_eq!(
            w,
            [
                "p.yaml:3:1: warning: `path` is deprecated and will be removed; call it `output`",
                "p.yaml:2:1: warning: `workers` is deprecated and will be removed; call it `concurrency`",
            ]
        );
        let f = SourceFile::new("p.yaml", None, "require: never\noutput: x\n".into());
        let w = warnings("collect-coverage", &parse_yaml(&f).unwrap());
        assert_eq!(w, ["p.yaml:1:10: warning: `require: never` is deprecated and will be removed; write `require: none`"]);
        let f = SourceFile::new("p.yaml", None, "since: \"2026-01-01T00:00:00Z\"\n".into());
        let w = warnings("collect-logs", &parse_yaml(&f).unwrap());
        assert_eq!(
            w,
            ["p.yaml:1:1: warning: `since` is deprecated and will be removed; call it `start`"]
        );
        let f = SourceFile::new("p.yaml", None, "concurrency: 4\noutput: x\n".into());
        assert!(warnings("collect-traces", &parse_yaml(&f).unwrap()).is_empty());
    }
}
