//! Source files, spans and the plan diagnostics that point into them.
//!
//! Every node of a loaded plan carries a [`Span`] into the file it came from (or into the
//! command line, for `--set`), so any later pass can report "file:line:col" without re-parsing.
//! All problems found in a plan are collected into one [`PlanErrors`] and rendered together.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};

/// One text a plan was read from: a plan file, a base it extends, or the `--set` arguments.
#[derive(Debug)]
pub struct SourceFile {
    /// Path as the user named it (relative paths stay relative) — what diagnostics show.
    pub display: String,
    /// Canonical path on disk, when the source is a file.
    pub path: Option<PathBuf>,
    pub text: Arc<String>,
}

impl SourceFile {
    pub fn new(display: impl Into<String>, path: Option<PathBuf>, text: String) -> Arc<Self> {
        Arc::new(Self {
            display: display.into(),
            path,
            text: Arc::new(text),
        })
    }

    pub fn named_source(&self) -> NamedSource<Arc<String>> {
        NamedSource::new(&self.display, Arc::clone(&self.text)).with_language(
            match self.path.as_deref().and_then(Path::extension) {
                Some(e) if e == "toml" => "toml",
                _ => "yaml",
            },
        )
    }

    /// 1-based line and column of a byte offset, for plain-text reports.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A byte range inside one [`SourceFile`].
#[derive(Clone)]
pub struct Span {
    pub file: Arc<SourceFile>,
    pub start: usize,
    pub len: usize,
}

impl Span {
    pub fn new(file: &Arc<SourceFile>, start: usize, len: usize) -> Self {
        let start = start.min(file.text.len());
        let len = len.min(file.text.len() - start);
        Self {
            file: Arc::clone(file),
            start,
            len,
        }
    }

    pub fn source_span(&self) -> SourceSpan {
        (self.start, self.len).into()
    }

    /// `file:line:col`, the form editors and terminals turn into links.
    pub fn location(&self) -> String {
        let (line, col) = self.file.line_col(self.start);
        format!("{}:{line}:{col}", self.file.display)
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location())
    }
}

/// What went wrong, as a stable code (`ttplan::plan::<code>`) for tests and docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Io,
    Syntax,
    UnknownField,
    InvalidValue,
    MissingField,
    UnknownKind,
    UnknownStep,
    Cycle,
    Template,
    UndefinedVariable,
    Extends,
    Runtime,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Io => "ttplan::plan::io",
            Code::Syntax => "ttplan::plan::syntax",
            Code::UnknownField => "ttplan::plan::unknown_field",
            Code::InvalidValue => "ttplan::plan::invalid_value",
            Code::MissingField => "ttplan::plan::missing_field",
            Code::UnknownKind => "ttplan::plan::unknown_kind",
            Code::UnknownStep => "ttplan::plan::unknown_step",
            Code::Cycle => "ttplan::plan::cycle",
            Code::Template => "ttplan::plan::template",
            Code::UndefinedVariable => "ttplan::plan::undefined_variable",
            Code::Extends => "ttplan::plan::extends",
            Code::Runtime => "ttplan::plan::runtime_reference",
        }
    }
}

/// One problem in a plan, with where it is.
#[derive(Debug, Clone)]
pub struct PlanDiag {
    pub code: Code,
    pub message: String,
    pub span: Option<Span>,
    pub label: Option<String>,
    pub help: Option<String>,
    /// Further places that explain the problem (e.g. the other edges of a cycle).
    pub related: Vec<(Span, String)>,
}

impl PlanDiag {
    pub fn new(code: Code, message: impl Into<String>, span: Option<&Span>) -> Self {
        Self {
            code,
            message: message.into(),
            span: span.cloned(),
            label: None,
            help: None,
            related: Vec::new(),
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn help_opt(mut self, help: Option<String>) -> Self {
        self.help = help.or(self.help);
        self
    }

    pub fn related(mut self, span: &Span, label: impl Into<String>) -> Self {
        self.related.push((span.clone(), label.into()));
        self
    }
}

impl fmt::Display for PlanDiag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.span {
            Some(span) => write!(f, "{}: {}", span.location(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for PlanDiag {}

impl Diagnostic for PlanDiag {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.span
            .as_ref()
            .map(|s| &*s.file as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = self.span.as_ref()?;
        let primary = miette::LabeledSpan::new_primary_with_span(
            Some(self.label.clone().unwrap_or_else(|| "here".into())),
            span.source_span(),
        );
        // Related spans in the same file are drawn as extra labels; others are listed in help.
        let extra = self
            .related
            .iter()
            .filter(|(s, _)| Arc::ptr_eq(&s.file, &span.file))
            .map(|(s, l)| miette::LabeledSpan::new_with_span(Some(l.clone()), s.source_span()));
        Some(Box::new(std::iter::once(primary).chain(extra)))
    }
}

impl miette::SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner = self
            .text
            .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.display.clone(),
            inner.data(),
            *inner.span(),
            inner.line(),
            inner.column(),
            inner.line_count(),
        )))
    }
}

/// Every problem found in a plan, reported together.
#[derive(Debug, Clone, Default)]
pub struct PlanErrors {
    pub diags: Vec<PlanDiag>,
}

impl PlanErrors {
    pub fn push(&mut self, diag: PlanDiag) {
        self.diags.push(diag);
    }

    pub fn is_empty(&self) -> bool {
        self.diags.is_empty()
    }

    pub fn len(&self) -> usize {
        self.diags.len()
    }

    pub fn extend(&mut self, other: PlanErrors) {
        self.diags.extend(other.diags);
    }

    /// `Ok(value)` when nothing was reported.
    pub fn into_result<T>(self, value: T) -> Result<T, PlanErrors> {
        if self.diags.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<PlanDiag> for PlanErrors {
    fn from(d: PlanDiag) -> Self {
        Self { diags: vec![d] }
    }
}

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.diags.len();
        write!(
            f,
            "plan is invalid: {n} problem{}",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for PlanErrors {}

impl Diagnostic for PlanErrors {
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.diags.iter().map(|d| d as &dyn Diagnostic)))
    }
}

/// "did you mean" for a misspelt name, by Jaro-Winkler similarity.
pub fn did_you_mean<'a>(
    wrong: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wrong, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_is_one_based_and_counts_chars() {
        let f = SourceFile::new("p.yaml", None, "a: 1\nbé: x\n".into());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(5), (2, 1));
        // 'x' sits after "bé: " — 4 chars, 5 bytes.
        assert_eq!(f.line_col(10), (2, 5));
    }

    #[test]
    fn suggestions_pick_the_closest_name() {
        assert_eq!(
            did_you_mean("shel", ["shell", "sleep"]).as_deref(),
            Some("did you mean `shell`?")
        );
        assert_eq!(did_you_mean("zzz", ["shell", "sleep"]), None);
    }
}
