//! `ttplan validate`'s checks of a `collect-metrics` step, one function per field. Templated
//! fields render when the step starts; they are checked then.

use super::queries::{self, QueryAt};
use super::CollectMetricsConfig;
use crate::collect::endpoint::check_http_url;
use crate::collect::parse_time;
use crate::diag::{did_you_mean, Code, PlanDiag, Span};
use crate::plan::node::Node;
use crate::plan::template::Templates;

/// The span of `key`'s value, or the step's when the key is absent.
fn span_of<'a>(node: &'a Node, key: &str) -> Option<&'a Span> {
    node.get(key).map(|n| &n.span).or(Some(&node.span))
}

impl CollectMetricsConfig {
    /// Runs every check of the step, in field order.
    pub(super) fn check_fields(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        self.check_queries(node, diags);
        self.check_times(node, diags);
        self.check_window_order(node, diags);
        self.check_step(node, diags);
        self.check_concurrency(node, diags);
        self.check_endpoint(node, diags);
    }

    fn any_query_templated(&self) -> bool {
        let templated = Templates::is_template;
        self.queries
            .0
            .iter()
            .chain(self.metric_sets.values().flat_map(|q| &q.0))
            .any(|e| templated(&e.query) || e.name.as_deref().is_some_and(templated))
            || self.sets.iter().flatten().any(|s| templated(s))
    }

    /// `queries`, `metric_sets` and `sets` resolve to a list of distinct, named queries.
    fn check_queries(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        if self.any_query_templated() {
            return;
        }
        let Err(e) = self.resolved_queries() else {
            return;
        };
        let label = match e.at {
            Some(QueryAt::Sets(_)) => "no such metric set",
            Some(_) => "this query",
            None => "here",
        };
        let help = match e.at {
            Some(QueryAt::Sets(i)) => self.unknown_set_help(i),
            _ => None,
        };
        let message = match (&e.at, &help) {
            // The "did you mean" goes to the help line.
            (Some(QueryAt::Sets(i)), Some(_)) => format!(
                "`sets` names `{}`, which is not in `metric_sets`",
                self.sets
                    .as_ref()
                    .and_then(|s| s.get(*i))
                    .map_or("", String::as_str)
            ),
            _ => e.message.clone(),
        };
        diags.push(
            PlanDiag::new(
                Code::InvalidValue,
                message,
                queries::span_of(node, e.at.as_ref()),
            )
            .label(label)
            .help_opt(help),
        );
    }

    /// For `sets[i]`, which names no metric set: the closest name, or the list of them.
    fn unknown_set_help(&self, i: usize) -> Option<String> {
        let set = self.sets.as_ref()?.get(i)?;
        let names = || self.metric_sets.keys().map(String::as_str);
        Some(
            did_you_mean(set, names()).unwrap_or_else(|| {
                format!("metric sets: {}", names().collect::<Vec<_>>().join(", "))
            }),
        )
    }

    /// `start` and `end` are RFC 3339 times.
    fn check_times(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        for (field, v) in [("start", &self.start), ("end", &self.end)] {
            if let Some(s) = v.as_deref().filter(|s| !Templates::is_template(s)) {
                if let Err(e) = parse_time(field, s) {
                    diags.push(
                        PlanDiag::new(Code::InvalidValue, e, span_of(node, field))
                            .label("not an RFC 3339 time"),
                    );
                }
            }
        }
    }

    /// `start` is not after `end`.
    fn check_window_order(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        let (Some(s), Some(e)) = (&self.start, &self.end) else {
            return;
        };
        if let (Ok(s), Ok(e)) = (parse_time("start", s), parse_time("end", e)) {
            if s > e {
                diags.push(
                    PlanDiag::new(
                        Code::InvalidValue,
                        "`start` is after `end`: the window is empty",
                        span_of(node, "start"),
                    )
                    .label("after `end`"),
                );
            }
        }
    }

    fn check_step(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        if let Err(e) = self.step_ms() {
            diags.push(
                PlanDiag::new(Code::InvalidValue, e, span_of(node, "step")).label("too small"),
            );
        }
    }

    fn check_concurrency(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        if self.concurrency == 0 {
            diags.push(
                PlanDiag::new(
                    Code::InvalidValue,
                    "`concurrency` must be at least 1",
                    span_of(node, "concurrency"),
                )
                .label("zero"),
            );
        }
    }

    /// A non-empty, untemplated `endpoint` is an http(s) URL.
    fn check_endpoint(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        let Some(url) = self
            .endpoint
            .as_deref()
            .filter(|u| !u.trim().is_empty() && !Templates::is_template(u))
        else {
            return;
        };
        if let Err(e) = check_http_url(url.trim()) {
            diags.push(
                PlanDiag::new(
                    Code::InvalidValue,
                    format!("`endpoint` `{url}` is not a usable URL: {e}"),
                    span_of(node, "endpoint"),
                )
                .label("not an http(s) URL"),
            );
        }
    }
}
