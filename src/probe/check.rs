//! Validation of a probe beyond its types: fields that belong to another probe type, what
//! each type needs, PromQL and regex syntax, tolerances and mode fields — each reported at the
//! field it concerns. Values still holding a runtime template are checked when they render.

use crate::diag::{Code, PlanDiag};
use crate::plan::node::Node;
use crate::plan::template::Templates;

use super::{Aggregate, Mode, ProbeSpec, ProbeType};

const PROMETHEUS: &[&str] = &[
    "query",
    "endpoint",
    "aggregate",
    "window",
    "start",
    "end",
    "resolution",
    "baseline",
    "compare",
];
const HTTP: &[&str] = &[
    "url",
    "method",
    "headers",
    "body",
    "status",
    "body_regex",
    "json_pointer",
    "latency_under",
];
const KUBERNETES: &[&str] = &[
    "resource",
    "api_version",
    "namespace",
    "selector",
    "name_prefixes",
    "ready",
    "absent",
    "field",
];
const COMMAND: &[&str] = &["run", "exit_code", "output_regex", "workdir"];

fn own_fields(t: ProbeType) -> &'static [&'static str] {
    match t {
        ProbeType::Prometheus => PROMETHEUS,
        ProbeType::Http => HTTP,
        ProbeType::Kubernetes => KUBERNETES,
        ProbeType::Command => COMMAND,
    }
}

fn owner(field: &str) -> Option<ProbeType> {
    [
        ProbeType::Prometheus,
        ProbeType::Http,
        ProbeType::Kubernetes,
        ProbeType::Command,
    ]
    .into_iter()
    .find(|t| own_fields(*t).contains(&field))
}

/// Checks `spec`, parsed from `node` (the probe's mapping).
pub fn check(spec: &ProbeSpec, node: &Node, diags: &mut Vec<PlanDiag>) {
    check_foreign_fields(spec.probe_type, node, diags);
    let mut c = Checker { spec, node, diags };
    match spec.probe_type {
        ProbeType::Prometheus => check_prometheus(&mut c),
        ProbeType::Http => check_http(&mut c),
        ProbeType::Kubernetes => check_kubernetes(&mut c),
        ProbeType::Command => check_command(&mut c),
    }
    check_syntax(&mut c);
    check_mode(&mut c);
}

/// A probe being checked, and where its problems go.
struct Checker<'a> {
    spec: &'a ProbeSpec,
    node: &'a Node,
    diags: &'a mut Vec<PlanDiag>,
}

impl Checker<'_> {
    /// A problem at `field`'s value (at the probe when the field is absent).
    fn err(&mut self, code: Code, field: &str, msg: String, label: &str) {
        let node = self.node;
        let at = node.get(field).map_or(&node.span, |n| &n.span);
        self.diags
            .push(PlanDiag::new(code, msg, Some(at)).label(label.to_string()));
    }

    /// Whether `field` still holds a template (checked when it renders).
    fn templated(&self, field: &str) -> bool {
        self.node
            .get(field)
            .and_then(Node::as_str)
            .is_some_and(Templates::is_template)
    }

    fn missing(&self, field: &str) -> bool {
        self.node.get(field).is_none()
    }
}

/// Fields that belong to another probe type.
fn check_foreign_fields(t: ProbeType, node: &Node, diags: &mut Vec<PlanDiag>) {
    let key_at = |field: &str| {
        node.as_map()
            .and_then(|m| m.get(field))
            .map_or(&node.span, |e| &e.key_span)
    };
    let Some(map) = node.as_map() else { return };
    for key in map.keys() {
        if let Some(o) = owner(key).filter(|o| *o != t) {
            diags.push(
                PlanDiag::new(
                    Code::UnknownField,
                    format!(
                        "`{key}` is a field of {} probes, not of {} probes",
                        o.as_str(),
                        t.as_str()
                    ),
                    Some(key_at(key)),
                )
                .label("not for this probe type")
                .help(format!(
                    "{} probes take: {}",
                    t.as_str(),
                    own_fields(t).join(", ")
                )),
            );
        }
    }
}

/// A query that parses, `expect`, and a window given one way.
fn check_prometheus(c: &mut Checker) {
    let spec = c.spec;
    let node = c.node;
    if c.missing("query") {
        c.err(
            Code::MissingField,
            "type",
            "a prometheus probe needs a `query`".into(),
            "in this probe",
        );
    } else if !c.templated("query") {
        if let Err((offset, why)) = super::promql::check(spec.query.as_deref().unwrap_or_default())
        {
            c.err(
                Code::InvalidValue,
                "query",
                format!("PromQL: {why} (at character {offset} of the query)"),
                "this query",
            );
        }
    }
    if spec.expect.is_none() {
        c.err(
            Code::MissingField,
            "type",
            "a prometheus probe needs `expect` (e.g. `expect: { lt: 0.05 }`)".into(),
            "in this probe",
        );
    }
    if spec.baseline.is_some() && matches!(spec.aggregate, Aggregate::All | Aggregate::Any) {
        c.err(
            Code::InvalidValue,
            "aggregate",
            "a `baseline` compares one number: use `aggregate: avg`, `max` or `min`".into(),
            "all/any judge samples one by one",
        );
    }
    if spec.window.is_some() && spec.start.is_some() {
        c.err(
            Code::InvalidValue,
            "window",
            "give `window` (a lookback) or `start`, not both".into(),
            "and `start`",
        );
    }
    if spec.end.is_some() && spec.start.is_none() && spec.window.is_none() {
        c.err(
            Code::MissingField,
            "end",
            "`end` needs `start` or `window`".into(),
            "no window start",
        );
    }
    for f in ["start", "end"] {
        if let (Some(s), false) = (node.get(f).and_then(Node::as_str), c.templated(f)) {
            if let Err(e) = crate::collect::parse_time(f, s) {
                c.err(Code::InvalidValue, f, e, "not a time");
            }
        }
    }
}

/// A URL, method and statuses that are valid; `equals` with `json_pointer`.
fn check_http(c: &mut Checker) {
    let spec = c.spec;
    if c.missing("url") {
        c.err(
            Code::MissingField,
            "type",
            "an http probe needs a `url`".into(),
            "in this probe",
        );
    } else if !c.templated("url") {
        if let Err(e) =
            crate::collect::endpoint::check_http_url(spec.url.as_deref().unwrap_or_default())
        {
            c.err(Code::InvalidValue, "url", format!("`url`: {e}"), "this URL");
        }
    }
    if let Some(m) = spec.method.as_deref().filter(|_| !c.templated("method")) {
        if reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).is_err() {
            c.err(
                Code::InvalidValue,
                "method",
                format!("`{m}` is not an HTTP method"),
                "method",
            );
        }
    }
    if spec.expect.is_some() {
        c.err(Code::InvalidValue, "expect", "http probes judge `status`, `body_regex`, `json_pointer` and `latency_under`, not `expect`".into(), "not for http");
    }
    for s in &spec.status {
        if !(100..=599).contains(s) {
            c.err(
                Code::InvalidValue,
                "status",
                format!("{s} is not an HTTP status"),
                "status",
            );
        }
    }
    if spec.equals.is_some() && spec.json_pointer.is_none() {
        c.err(
            Code::MissingField,
            "equals",
            "`equals` needs `json_pointer`".into(),
            "compared with nothing",
        );
    }
}

/// Exactly one condition; `field` with `equals`.
fn check_kubernetes(c: &mut Checker) {
    let spec = c.spec;
    let conditions = [
        spec.ready.is_some(),
        spec.absent.is_some(),
        spec.field.is_some(),
        spec.expect.is_some(),
    ];
    match conditions.iter().filter(|c| **c).count() {
        0 => c.err(Code::MissingField, "type", "a kubernetes probe needs one condition: `ready`, `absent`, `field` + `equals`, or `expect` (object count)".into(), "in this probe"),
        1 => {}
        _ => c.err(Code::InvalidValue, "type", "a kubernetes probe takes one condition: `ready`, `absent`, `field` + `equals`, or `expect`".into(), "several conditions"),
    }
    if spec.field.is_some() != spec.equals.is_some() {
        let f = if spec.field.is_some() {
            "field"
        } else {
            "equals"
        };
        c.err(
            Code::MissingField,
            f,
            "`field` and `equals` go together".into(),
            "alone",
        );
    }
}

/// `run`, and one way to judge the exit code.
fn check_command(c: &mut Checker) {
    let spec = c.spec;
    if c.missing("run") {
        c.err(
            Code::MissingField,
            "type",
            "a command probe needs `run`".into(),
            "in this probe",
        );
    }
    if spec.expect.is_some() && spec.exit_code.is_some() {
        c.err(
            Code::InvalidValue,
            "expect",
            "give `exit_code` or `expect` (on the exit code), not both".into(),
            "and `exit_code`",
        );
    }
}

/// JSON pointers, regexes and tolerances, for every type.
fn check_syntax(c: &mut Checker) {
    let spec = c.spec;
    let node = c.node;
    for f in ["json_pointer", "field"] {
        if let (Some(p), false) = (node.get(f).and_then(Node::as_str), c.templated(f)) {
            if !p.is_empty() && !p.starts_with('/') {
                c.err(
                    Code::InvalidValue,
                    f,
                    format!(
                        "`{p}` is not a JSON pointer: write `/{}`",
                        p.replace('.', "/")
                    ),
                    "starts with `/`",
                );
            }
        }
    }
    for f in ["body_regex", "output_regex"] {
        if let (Some(r), false) = (node.get(f).and_then(Node::as_str), c.templated(f)) {
            if let Err(e) = regex::Regex::new(r) {
                c.err(Code::InvalidValue, f, format!("`{f}`: {e}"), "this regex");
            }
        }
    }
    if let Some(e) = &spec.expect {
        for p in e.problems() {
            c.err(Code::InvalidValue, "expect", p, "this tolerance");
        }
    }
}

/// The fields of `mode: continuous` and of `mode: once`.
fn check_mode(c: &mut Checker) {
    let spec = c.spec;
    match spec.mode {
        Mode::Continuous => {
            if spec.until.is_none() {
                c.err(
                    Code::MissingField,
                    "mode",
                    "a continuous probe needs `until: <step>` (the step whose start ends it)"
                        .into(),
                    "continuous",
                );
            }
            if spec.within.is_some() {
                c.err(
                    Code::InvalidValue,
                    "within",
                    "`within` is for `mode: once`".into(),
                    "continuous probe",
                );
            }
        }
        Mode::Once => {
            for f in ["until", "until_event", "require"] {
                if !c.missing(f) {
                    c.err(
                        Code::InvalidValue,
                        f,
                        format!("`{f}` is for `mode: continuous`"),
                        "this probe runs once",
                    );
                }
            }
        }
    }
}
