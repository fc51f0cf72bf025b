//! The PromQL subset the campaign's plans use, evaluated over a [`Source`] of scraped series.
//!
//! Parsing is the `promql-parser` crate's (GreptimeDB's port of Prometheus' grammar); this
//! module evaluates its AST the way Prometheus' engine does (`promql/engine.go`,
//! `promql/functions.go`, Prometheus 3.x):
//!
//! - an instant vector selector takes each series' latest sample in `(t - 5m, t]` unless it is
//!   a staleness marker (`evaluator.vectorSelectorSingle`);
//! - a range selector `[d]` takes the samples in `(t - d, t]` (`evaluator.matrixIterSlice`);
//! - `rate`/`increase` extrapolate as `extrapolatedRate`, `irate` uses the last two samples as
//!   `instantValue`;
//! - `sum`/`avg`/`min`/`max`/`count` with `by`/`without` group as `evaluator.aggregation`;
//! - arithmetic between vectors matches one-to-one on all labels but `__name__` (or `on`/
//!   `ignoring`), as `evaluator.VectorBinop`; `or` as `evaluator.VectorOr`;
//! - functions, aggregations and arithmetic drop `__name__` (`resultMetric`,
//!   `dropMetricName`).
//!
//! Anything else is refused with [`EvalError::Unsupported`], which the server answers with
//! Prometheus' `bad_data` error shape ("… not supported by the sandbox").

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use promql_parser::label::Matcher;
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, VectorMatchCardinality,
    VectorSelector,
};

/// A series' labels, `__name__` included, sorted by name (as Prometheus' `labels.Labels`).
pub type Labels = BTreeMap<String, String>;

/// Prometheus' default lookback delta (`--query.lookback-delta`).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Where the evaluator reads series from.
pub trait Source {
    /// Ids of the series whose labels `matches` accepts.
    fn select(&self, matches: &dyn Fn(&Labels) -> bool) -> Vec<usize>;
    fn labels(&self, id: usize) -> &Labels;
    /// Samples with `lo < t <= hi`, in time order (staleness markers left out).
    fn samples(&self, id: usize, lo: i64, hi: i64, out: &mut Vec<(i64, f64)>);
    /// The latest sample with `lo < t <= hi`; `None` when there is none or it is a staleness
    /// marker.
    fn last(&self, id: usize, lo: i64, hi: i64) -> Option<(i64, f64)>;
}

#[derive(Debug, Clone, PartialEq)]
pub enum EvalError {
    /// Valid PromQL the sandbox does not evaluate (HTTP 400 `bad_data`).
    Unsupported(String),
    /// An execution error Prometheus reports as `execution` (HTTP 422).
    Execution(String),
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalError::Unsupported(what) => write!(f, "{what} not supported by the sandbox"),
            EvalError::Execution(e) => f.write_str(e),
        }
    }
}

fn unsupported<T>(what: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError::Unsupported(what.into()))
}

/// One element of an instant vector.
#[derive(Debug, Clone)]
pub struct Elem {
    pub labels: Rc<Labels>,
    pub value: f64,
}

/// An expression's value at every step of the query.
enum Val {
    Scalar(Vec<f64>),
    Vector(Vec<Vec<Elem>>),
}

/// What a query evaluates to, step by step (`steps` as given to [`evaluate`]).
pub enum Output {
    Scalar(Vec<f64>),
    Vector(Vec<Vec<Elem>>),
}

/// Evaluates `expr` at each of `steps` (epoch milliseconds, ascending).
///
/// # Errors
/// Unsupported PromQL; many-to-many matches.
pub fn evaluate(expr: &Expr, steps: &[i64], src: &dyn Source) -> Result<Output, EvalError> {
    match eval(expr, steps, src)? {
        Val::Scalar(s) => Ok(Output::Scalar(s)),
        Val::Vector(v) => Ok(Output::Vector(v)),
    }
}

fn eval(expr: &Expr, steps: &[i64], src: &dyn Source) -> Result<Val, EvalError> {
    match expr {
        Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; steps.len()])),
        Expr::Paren(p) => eval(&p.expr, steps, src),
        Expr::Unary(u) => Ok(match eval(&u.expr, steps, src)? {
            Val::Scalar(s) => Val::Scalar(s.into_iter().map(|v| -v).collect()),
            Val::Vector(v) => Val::Vector(map_vec(v, |x| -x)),
        }),
        Expr::VectorSelector(vs) => instant_selector(vs, steps, src),
        Expr::Call(c) => call(c, steps, src),
        Expr::Aggregate(a) => aggregate(a, steps, src),
        Expr::Binary(b) => binary(b, steps, src),
        Expr::MatrixSelector(_) => unsupported("a range vector outside rate/irate/increase"),
        Expr::Subquery(_) => unsupported("subqueries"),
        Expr::StringLiteral(_) => unsupported("string literals"),
        Expr::Extension(_) => unsupported("extension expressions"),
    }
}

/// Elements whose value is transformed; `__name__` dropped (arithmetic with a scalar).
fn map_vec(v: Vec<Vec<Elem>>, f: impl Fn(f64) -> f64) -> Vec<Vec<Elem>> {
    v.into_iter()
        .map(|step| {
            step.into_iter()
                .map(|e| Elem {
                    labels: drop_name(&e.labels),
                    value: f(e.value),
                })
                .collect()
        })
        .collect()
}

fn drop_name(l: &Rc<Labels>) -> Rc<Labels> {
    if l.contains_key("__name__") {
        let mut l = (**l).clone();
        l.remove("__name__");
        Rc::new(l)
    } else {
        l.clone()
    }
}

/// The selector's matchers as one predicate; `offset`, `@` and `or` inside braces refused.
fn selector_matcher(vs: &VectorSelector) -> Result<impl Fn(&Labels) -> bool + '_, EvalError> {
    if vs.offset.is_some() {
        return unsupported("the offset modifier");
    }
    if vs.at.is_some() {
        return unsupported("the @ modifier");
    }
    if !vs.matchers.or_matchers.is_empty() {
        return unsupported("`or` inside a selector's braces");
    }
    Ok(move |l: &Labels| {
        let get = |n: &str| l.get(n).map_or("", String::as_str);
        vs.name.as_deref().is_none_or(|n| get("__name__") == n)
            && vs
                .matchers
                .matchers
                .iter()
                .all(|m: &Matcher| m.is_match(get(&m.name)))
    })
}

fn instant_selector(
    vs: &VectorSelector,
    steps: &[i64],
    src: &dyn Source,
) -> Result<Val, EvalError> {
    let m = selector_matcher(vs)?;
    let ids = src.select(&m);
    let labels: Vec<Rc<Labels>> = ids
        .iter()
        .map(|&i| Rc::new(src.labels(i).clone()))
        .collect();
    let out = steps
        .iter()
        .map(|&t| {
            ids.iter()
                .zip(&labels)
                .filter_map(|(&id, l)| {
                    src.last(id, t - LOOKBACK_MS, t).map(|(_, v)| Elem {
                        labels: l.clone(),
                        value: v,
                    })
                })
                .collect()
        })
        .collect();
    Ok(Val::Vector(out))
}

fn call(c: &Call, steps: &[i64], src: &dyn Source) -> Result<Val, EvalError> {
    let name = c.func.name;
    match name {
        "rate" | "irate" | "increase" => {
            let Some(Expr::MatrixSelector(ms)) = c.args.args.first().map(|b| &**b) else {
                return unsupported(format!("{name}() of anything but a range selector"));
            };
            range_function(name, ms, steps, src)
        }
        "vector" => {
            let Some(arg) = c.args.args.first() else {
                return Err(EvalError::Execution("vector() needs an argument".into()));
            };
            match eval(arg, steps, src)? {
                Val::Scalar(s) => Ok(Val::Vector(
                    s.into_iter()
                        .map(|v| {
                            vec![Elem {
                                labels: Rc::new(Labels::new()),
                                value: v,
                            }]
                        })
                        .collect(),
                )),
                Val::Vector(_) => unsupported("vector() of a vector"),
            }
        }
        other => unsupported(format!("the function {other}()")),
    }
}

fn range_function(
    name: &str,
    ms: &MatrixSelector,
    steps: &[i64],
    src: &dyn Source,
) -> Result<Val, EvalError> {
    let m = selector_matcher(&ms.vs)?;
    let range_ms = ms.range.as_millis() as i64;
    let ids = src.select(&m);
    let labels: Vec<Rc<Labels>> = ids
        .iter()
        .map(|&i| {
            let mut l = src.labels(i).clone();
            l.remove("__name__");
            Rc::new(l)
        })
        .collect();
    // Each series' window slides along the steps: keep the samples still inside it and
    // read only the new ones, as `matrixIterSlice` reuses the previous step's points.
    let mut windows: Vec<(i64, Vec<(i64, f64)>)> = vec![(i64::MIN, Vec::new()); ids.len()];
    let mut out = Vec::with_capacity(steps.len());
    for &t in steps {
        let lo = t - range_ms;
        let mut step = Vec::new();
        for (i, (&id, l)) in ids.iter().zip(&labels).enumerate() {
            let (read_to, buf) = &mut windows[i];
            if *read_to <= t && *read_to >= lo {
                buf.retain(|(ts, _)| *ts > lo);
                src.samples(id, *read_to, t, buf);
            } else {
                buf.clear();
                src.samples(id, lo, t, buf);
            }
            *read_to = t;
            let buf = &*buf;
            let v = match name {
                "irate" => instant_rate(buf),
                "rate" => extrapolated_rate(buf, lo, t, range_ms, true),
                _ => extrapolated_rate(buf, lo, t, range_ms, false),
            };
            if let Some(value) = v {
                step.push(Elem {
                    labels: l.clone(),
                    value,
                });
            }
        }
        out.push(step);
    }
    Ok(Val::Vector(out))
}

/// `promql/functions.go` `extrapolatedRate` for float counters (Prometheus 3.x without start
/// timestamps): the increase between the first and last sample, corrected for counter resets,
/// extrapolated towards the range's ends when the samples reach close to them (within 1.1 ×
/// the average interval), else by half an interval, and never below the counter's zero point.
pub fn extrapolated_rate(
    s: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    is_rate: bool,
) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (first_t, first_v) = s[0];
    let (last_t, last_v) = s[s.len() - 1];
    let mut result = last_v - first_v;
    let mut prev = first_v;
    for &(_, v) in &s[1..] {
        if v < prev {
            result += prev;
        }
        prev = v;
    }
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / (s.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `promql/functions.go` `instantValue` for `irate`: the last two samples' slope; after a
/// counter reset, the last value over the interval.
pub fn instant_rate(s: &[(i64, f64)]) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (t0, v0) = s[s.len() - 2];
    let (t1, v1) = s[s.len() - 1];
    if t1 == t0 {
        return None;
    }
    let delta = if v1 < v0 { v1 } else { v1 - v0 };
    Some(delta / ((t1 - t0) as f64 / 1000.0))
}

/// The labels an aggregation keeps: `by` → only those; `without` → all but those and
/// `__name__`; neither → none (`evaluator.aggregation`, `generateGroupingKey`).
fn group_labels(l: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        None => Labels::new(),
        Some(LabelModifier::Include(by)) => l
            .iter()
            .filter(|(k, _)| by.labels.iter().any(|b| b == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(LabelModifier::Exclude(without)) => l
            .iter()
            .filter(|(k, _)| *k != "__name__" && !without.labels.iter().any(|b| b == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn aggregate(a: &AggregateExpr, steps: &[i64], src: &dyn Source) -> Result<Val, EvalError> {
    let op = a.op.to_string();
    if !matches!(op.as_str(), "sum" | "avg" | "max" | "min" | "count") {
        return unsupported(format!("the aggregation {op}"));
    }
    if a.param.is_some() {
        return unsupported(format!("a parameter to {op}"));
    }
    let Val::Vector(input) = eval(&a.expr, steps, src)? else {
        return unsupported(format!("{op} over a scalar"));
    };
    // Group keys repeat across steps: compute each input label set's group once.
    let mut groups: HashMap<*const Labels, Rc<Labels>> = HashMap::new();
    let mut out = Vec::with_capacity(input.len());
    for step in input {
        // (sum or extreme, count) per group, in first-seen order.
        let mut acc: Vec<(Rc<Labels>, f64, f64)> = Vec::new();
        let mut index: HashMap<Rc<Labels>, usize> = HashMap::new();
        for e in step {
            let g = groups
                .entry(Rc::as_ptr(&e.labels))
                .or_insert_with(|| Rc::new(group_labels(&e.labels, &a.modifier)))
                .clone();
            let i = *index.entry(g.clone()).or_insert_with(|| {
                acc.push((g, f64::NAN, 0.0));
                acc.len() - 1
            });
            let slot = &mut acc[i];
            slot.2 += 1.0;
            let v = e.value;
            slot.1 = if slot.2 == 1.0 {
                v
            } else {
                match op.as_str() {
                    "sum" | "avg" => slot.1 + v,
                    // Prometheus replaces a NaN by any number (`aggregation`, MAX/MIN).
                    "max" if v > slot.1 || slot.1.is_nan() => v,
                    "min" if v < slot.1 || slot.1.is_nan() => v,
                    _ => slot.1,
                }
            };
        }
        out.push(
            acc.into_iter()
                .map(|(labels, v, n)| Elem {
                    labels,
                    value: match op.as_str() {
                        "avg" => v / n,
                        "count" => n,
                        _ => v,
                    },
                })
                .collect(),
        );
    }
    Ok(Val::Vector(out))
}

fn arith(op: &str, l: f64, r: f64) -> f64 {
    match op {
        "+" => l + r,
        "-" => l - r,
        "*" => l * r,
        _ => l / r,
    }
}

/// The labels two sides are matched on: `on(…)` → those; otherwise all but `__name__` and
/// `ignoring(…)` (`signatureFunc`).
fn signature(l: &Labels, matching: &Option<LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => l
            .iter()
            .filter(|(k, _)| on.labels.iter().any(|b| b == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(LabelModifier::Exclude(ign)) => l
            .iter()
            .filter(|(k, _)| *k != "__name__" && !ign.labels.iter().any(|b| b == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => l
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn show(l: &Labels) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn binary(b: &BinaryExpr, steps: &[i64], src: &dyn Source) -> Result<Val, EvalError> {
    let op = b.op.to_string();
    let modifier = b.modifier.as_ref();
    let matching = modifier.and_then(|m| m.matching.clone());
    if let Some(m) = modifier {
        if matches!(
            m.card,
            VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_)
        ) {
            return unsupported("group_left/group_right");
        }
        if m.return_bool {
            return unsupported("the bool modifier");
        }
    }
    let is_or = op == "or";
    if !is_or && !matches!(op.as_str(), "+" | "-" | "*" | "/") {
        return unsupported(format!("the operator {op}"));
    }
    let lhs = eval(&b.lhs, steps, src)?;
    let rhs = eval(&b.rhs, steps, src)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) if !is_or => Ok(Val::Scalar(
            l.iter().zip(&r).map(|(a, b)| arith(&op, *a, *b)).collect(),
        )),
        (Val::Vector(v), Val::Scalar(s)) if !is_or => Ok(Val::Vector(
            v.into_iter()
                .zip(s)
                .map(|(step, s)| {
                    step.into_iter()
                        .map(|e| Elem {
                            labels: drop_name(&e.labels),
                            value: arith(&op, e.value, s),
                        })
                        .collect()
                })
                .collect(),
        )),
        (Val::Scalar(s), Val::Vector(v)) if !is_or => Ok(Val::Vector(
            v.into_iter()
                .zip(s)
                .map(|(step, s)| {
                    step.into_iter()
                        .map(|e| Elem {
                            labels: drop_name(&e.labels),
                            value: arith(&op, s, e.value),
                        })
                        .collect()
                })
                .collect(),
        )),
        (Val::Vector(l), Val::Vector(r)) if is_or => Ok(Val::Vector(
            l.into_iter()
                .zip(r)
                .map(|(l, r)| vector_or(l, r, &matching))
                .collect(),
        )),
        (Val::Vector(l), Val::Vector(r)) => {
            let mut out = Vec::with_capacity(l.len());
            for (l, r) in l.into_iter().zip(r) {
                out.push(vector_binop(&op, l, r, &matching)?);
            }
            Ok(Val::Vector(out))
        }
        _ => unsupported(format!("`{op}` between a scalar and a vector")),
    }
}

/// `evaluator.VectorOr`: every left element, plus the right elements whose signature no left
/// element has.
fn vector_or(l: Vec<Elem>, r: Vec<Elem>, matching: &Option<LabelModifier>) -> Vec<Elem> {
    let sigs: Vec<Labels> = l.iter().map(|e| signature(&e.labels, matching)).collect();
    let mut out = l;
    for e in r {
        let sig = signature(&e.labels, matching);
        if !sigs.contains(&sig) {
            out.push(e);
        }
    }
    out
}

/// `evaluator.VectorBinop`, one-to-one: each left element pairs with the right element of the
/// same signature; a signature twice on the right (or the left) is Prometheus' many-to-many
/// error. The result keeps the left labels, `__name__` dropped (`on` keeps only its labels).
fn vector_binop(
    op: &str,
    l: Vec<Elem>,
    r: Vec<Elem>,
    matching: &Option<LabelModifier>,
) -> Result<Vec<Elem>, EvalError> {
    let mut right: HashMap<Labels, &Elem> = HashMap::new();
    for e in &r {
        let sig = signature(&e.labels, matching);
        if let Some(prev) = right.insert(sig.clone(), e) {
            return Err(EvalError::Execution(format!(
                "found duplicate series for the match group {} on the right hand-side of the \
                 operation: [{}, {}];many-to-many matching not allowed: matching labels must be \
                 unique on one side",
                show(&sig),
                show(&prev.labels),
                show(&e.labels)
            )));
        }
    }
    let mut seen: HashMap<Labels, ()> = HashMap::new();
    let mut out = Vec::new();
    for e in &l {
        let sig = signature(&e.labels, matching);
        let Some(re) = right.get(&sig) else { continue };
        if seen.insert(sig.clone(), ()).is_some() {
            return Err(EvalError::Execution(
                "multiple matches for labels: many-to-one matching must be explicit \
                 (group_left/group_right)"
                    .into(),
            ));
        }
        let labels = match matching {
            Some(LabelModifier::Include(_)) => Rc::new(sig),
            _ => drop_name(&e.labels),
        };
        out.push(Elem {
            labels,
            value: arith(op, e.value, re.value),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Series sampled every 15 s from 0, each `(labels, f(t_secs))`.
    /// A series' value as a function of seconds.
    type Curve = fn(f64) -> f64;

    struct Fixed(Vec<(Labels, Curve)>);

    impl Source for Fixed {
        fn select(&self, m: &dyn Fn(&Labels) -> bool) -> Vec<usize> {
            (0..self.0.len()).filter(|&i| m(&self.0[i].0)).collect()
        }
        fn labels(&self, id: usize) -> &Labels {
            &self.0[id].0
        }
        fn samples(&self, id: usize, lo: i64, hi: i64, out: &mut Vec<(i64, f64)>) {
            let mut t = (lo.div_euclid(15_000) + 1) * 15_000;
            while t <= hi {
                if t >= 0 {
                    out.push((t, (self.0[id].1)(t as f64 / 1000.0)));
                }
                t += 15_000;
            }
        }
        fn last(&self, id: usize, lo: i64, hi: i64) -> Option<(i64, f64)> {
            let t = hi.div_euclid(15_000) * 15_000;
            (t > lo && t >= 0).then(|| (t, (self.0[id].1)(t as f64 / 1000.0)))
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn src() -> Fixed {
        Fixed(vec![
            (
                labels(&[("__name__", "req_total"), ("pod", "a"), ("code", "200")]),
                |t| 10.0 * t,
            ),
            (
                labels(&[("__name__", "req_total"), ("pod", "a"), ("code", "500")]),
                |t| 1.0 * t,
            ),
            (
                labels(&[("__name__", "req_total"), ("pod", "b"), ("code", "200")]),
                |t| 4.0 * t,
            ),
            (labels(&[("__name__", "temp"), ("pod", "a")]), |_| 3.0),
            (labels(&[("__name__", "temp"), ("pod", "b")]), |_| 5.0),
        ])
    }

    fn run(q: &str) -> Result<Output, EvalError> {
        let e = promql_parser::parser::parse(q).unwrap();
        evaluate(&e, &[600_000], &src())
    }

    fn vector(q: &str) -> Vec<(Labels, f64)> {
        match run(q).unwrap() {
            Output::Vector(mut v) => {
                let mut out: Vec<(Labels, f64)> = v
                    .remove(0)
                    .into_iter()
                    .map(|e| ((*e.labels).clone(), e.value))
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                out
            }
            Output::Scalar(_) => panic!("scalar"),
        }
    }

    #[test]
    fn rate_of_a_linear_counter_is_its_slope() {
        let v = vector(r#"rate(req_total{pod="a", code="200"}[1m])"#);
        assert_eq!(v.len(), 1);
        assert!((v[0].1 - 10.0).abs() < 1e-9, "{v:?}");
        assert!(!v[0].0.contains_key("__name__"));
        let v = vector(r#"increase(req_total{pod="a", code="200"}[1m])"#);
        assert!((v[0].1 - 600.0).abs() < 1e-9);
        let v = vector(r#"irate(req_total{pod="b"}[1m])"#);
        assert!((v[0].1 - 4.0).abs() < 1e-9);
    }

    #[test]
    fn extrapolation_follows_prometheus() {
        // Samples at 15 s, 30 s, 45 s of a 60 s window (0, 60]: the start is 15 s away (within
        // 1.1 × 15 s): extrapolated to both ends, but not below the counter's zero point.
        let s = [(15_000, 15.0), (30_000, 30.0), (45_000, 45.0)];
        let r = extrapolated_rate(&s, 0, 60_000, 60_000, false).unwrap();
        assert!((r - 60.0).abs() < 1e-9, "{r}");
        // A reset: the counter restarted from 0, so the increase is the value after it.
        let s = [(0, 10.0), (15_000, 2.0)];
        let r = extrapolated_rate(&s, -1, 15_000, 15_001, false).unwrap();
        assert!((r - 2.0).abs() < 0.01, "{r}");
        assert_eq!(extrapolated_rate(&s[..1], 0, 1, 1, true), None);
        assert_eq!(instant_rate(&[(0, 10.0), (10_000, 2.0)]), Some(0.2));
    }

    #[test]
    fn aggregations_group_by_and_without() {
        let v = vector("sum by (pod) (rate(req_total[1m]))");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].0, labels(&[("pod", "a")]));
        assert!((v[0].1 - 11.0).abs() < 1e-9);
        let v = vector("count without (code) (req_total)");
        assert_eq!(
            v,
            vec![
                (labels(&[("pod", "a")]), 2.0),
                (labels(&[("pod", "b")]), 1.0)
            ]
        );
        assert_eq!(vector("max(temp)")[0].1, 5.0);
        assert_eq!(vector("min(temp)")[0].1, 3.0);
        assert_eq!(vector("avg(temp)")[0].1, 4.0);
    }

    #[test]
    fn error_share_query_matches_one_to_one_and_falls_back_with_or() {
        let q =
            r#"(sum(rate(req_total{code=~"5.."}[1m])) or vector(0)) / sum(rate(req_total[1m]))"#;
        let v = vector(q);
        assert_eq!(v.len(), 1);
        assert!((v[0].1 - 1.0 / 15.0).abs() < 1e-9, "{v:?}");
        let q =
            r#"(sum(rate(req_total{code=~"4.."}[1m])) or vector(0)) / sum(rate(req_total[1m]))"#;
        assert_eq!(vector(q)[0].1, 0.0);
        // Vector/vector keeps the left labels without the name; unmatched elements vanish.
        let v = vector(r#"temp / on(pod) sum by (pod) (rate(req_total[1m]))"#);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].0, labels(&[("pod", "a")]));
        let v = vector("temp * 2 - 1");
        assert_eq!(v[1].1, 9.0);
        assert!(!v[0].0.contains_key("__name__"));
        assert!(matches!(run("1 + 2 * 3").unwrap(), Output::Scalar(s) if s == vec![7.0]));
    }

    #[test]
    fn matchers_include_negations_regexes_and_the_name() {
        assert_eq!(vector(r#"req_total{code!="200"}"#).len(), 1);
        assert_eq!(vector(r#"req_total{pod!~"a|c"}"#).len(), 1);
        assert_eq!(vector(r#"{__name__=~"temp|req_total", pod="b"}"#).len(), 2);
        // A missing label matches the empty string.
        assert_eq!(vector(r#"temp{code=""}"#).len(), 2);
        assert_eq!(vector(r#"temp{code!=""}"#).len(), 0);
    }

    #[test]
    fn many_to_many_and_unsupported_forms_are_errors() {
        let e = run(r#"req_total / ignoring(code) temp"#);
        assert!(
            matches!(e, Err(EvalError::Execution(ref m)) if m.contains("multiple matches")),
            "{:?}",
            e.err()
        );
        for q in [
            "topk(3, temp)",
            "histogram_quantile(0.9, temp)",
            "temp > 3",
            "temp offset 5m",
            "rate(temp[5m:1m])",
            "temp and temp",
        ] {
            let e = run(q).err().unwrap_or_else(|| panic!("{q} evaluated"));
            assert!(matches!(e, EvalError::Unsupported(_)), "{q}: {e:?}");
            assert!(
                e.to_string().ends_with("not supported by the sandbox"),
                "{e}"
            );
        }
    }
}
