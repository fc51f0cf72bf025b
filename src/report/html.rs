//! The page: plain HTML with inline CSS and the charts' inline SVG. No script, no external
//! resource; every section says when its data is absent.

use std::fmt::Write as _;

use chrono::{TimeZone, Utc};

use super::api::CLASSES;
use super::logs::TOP_PODS;
use super::metrics::MetricsAgg;
use super::plot::{self, Bar, Series, FAULT_FILL_HEX, FAULT_OPACITY};
use super::run::{RunReport, Section};
use super::timeline::{Ms, Phase, Timeline};
use super::traces::{TraceAgg, TOP_SERVICES};
use crate::engine::progress::format_elapsed;

pub const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:960px;padding:1rem 1.5rem;color:#222;background:#fff}
h1{font-size:1.4rem;margin:.2rem 0 .6rem}h2{font-size:1.15rem;border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
h3{font-size:1rem;margin:1.2rem 0 .3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.4rem 0}td,th{border:1px solid #ddd;padding:.2rem .45rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
dl{display:grid;grid-template-columns:max-content auto;gap:.15rem .8rem;font-size:.9rem}dt{font-weight:600}dd{margin:0}
.badge{display:inline-block;padding:0 .45rem;border-radius:.6rem;color:#fff;font-weight:600;font-size:.85rem}
.absent{color:#777;font-style:italic}.problems{color:#a15c00;font-size:.85rem}
.legend span{display:inline-block;margin-right:.9rem;font-size:.8rem}.legend i{display:inline-block;width:.9rem;height:.7rem;margin-right:.3rem;vertical-align:middle}
nav a{margin-right:.8rem;font-size:.9rem}svg{max-width:100%;height:auto;display:block}
code{font-size:.8rem;word-break:break-all}
";

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

pub fn fmt_time(t: Option<Ms>) -> String {
    t.and_then(|t| Utc.timestamp_millis_opt(t).single())
        .map_or_else(
            || "—".into(),
            |d| d.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
}

pub fn fmt_ms(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "—".into(),
        |m| format_elapsed(std::time::Duration::from_millis(m)),
    )
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{:.1} %", v * 100.0))
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), plot::short)
}

pub fn status_badge(status: &str) -> String {
    let c = plot::status_color(status);
    format!(
        "<span class=\"badge status-{0}\" style=\"background:rgb({1},{2},{3})\">{0}</span>",
        esc(status),
        c.0,
        c.1,
        c.2
    )
}

fn fault_legend() -> String {
    format!(
        "<span><i style=\"background:{FAULT_FILL_HEX};opacity:{}\"></i>fault window (fault_labels.json)</span>",
        FAULT_OPACITY * 2.0
    )
}

fn problems(out: &mut String, list: &[String]) {
    if !list.is_empty() {
        out.push_str("<ul class=\"problems\">");
        for p in list {
            let _ = write!(out, "<li>{}</li>", esc(p));
        }
        out.push_str("</ul>");
    }
}

fn section_open(out: &mut String, id: &str, title: &str, state: &str) {
    let _ = write!(
        out,
        "<section id=\"{id}\" data-state=\"{state}\"><h2>{title}</h2>"
    );
}

fn absent(out: &mut String, id: &str, title: &str, why: &str) {
    section_open(out, id, title, "absent");
    let _ = write!(
        out,
        "<p class=\"absent\">No data: {}.</p></section>",
        esc(why)
    );
}

/// A row of "warm-up / fault / after" values.
fn phase_row(out: &mut String, what: &str, vals: [String; 3]) {
    let _ = write!(
        out,
        "<tr><th>{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
        esc(what),
        vals[0],
        vals[1],
        vals[2]
    );
}

const PHASE_HEAD: &str =
    "<table class=\"phases\"><tr><th></th><th>warm-up</th><th>fault</th><th>after</th></tr>";

pub fn run_page(r: &RunReport) -> String {
    let m = &r.meta;
    let tl = &r.timeline;
    let mut o = String::with_capacity(512 * 1024);
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{} — ttplan report</title><style>{CSS}</style></head><body>",
        esc(&m.exp_name)
    );
    header(&mut o, r);
    o.push_str("<nav><a href=\"#timeline\">Steps</a><a href=\"#faults\">Faults</a><a href=\"#metrics\">Metrics</a><a href=\"#traces\">Traces</a><a href=\"#api\">API</a><a href=\"#logs\">Logs</a><a href=\"#coverage\">Coverage</a></nav>");
    steps(&mut o, r);
    faults(&mut o, r);
    metrics(&mut o, r, tl);
    traces(&mut o, r, tl);
    api(&mut o, r, tl);
    logs(&mut o, r, tl);
    coverage(&mut o, r);
    let _ = writeln!(
        o,
        "<footer><p class=\"absent\">Written by ttplan {} at {}.</p></footer></body></html>",
        env!("CARGO_PKG_VERSION"),
        fmt_time(Some(Utc::now().timestamp_millis()))
    );
    o
}

fn header(o: &mut String, r: &RunReport) {
    let m = &r.meta;
    let _ = write!(
        o,
        "<header id=\"header\" data-state=\"data\"><h1>{}</h1><dl>",
        esc(&m.exp_name)
    );
    let mut row = |k: &str, v: String| {
        let _ = write!(o, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    };
    row(
        "Plan",
        format!("{} <code>{}</code>", esc(&m.plan_name), esc(&m.plan_path)),
    );
    if let Some(d) = &m.description {
        row("Description", esc(d));
    }
    row(
        "Status",
        status_badge(if m.status.is_empty() {
            "unknown"
        } else {
            &m.status
        }),
    );
    row("Started", fmt_time(m.started));
    row("Finished", fmt_time(m.finished));
    row("Duration", fmt_ms(m.duration_ms));
    row("Run id", esc(&m.run_id));
    let git = match (&m.git_commit, m.git_dirty) {
        (Some(c), Some(true)) => format!("<code>{}</code> (dirty: uncommitted changes)", esc(c)),
        (Some(c), _) => format!("<code>{}</code>", esc(c)),
        (None, _) => "not in a git repository".into(),
    };
    row("Plan commit", git);
    for (k, v) in &m.cluster {
        row(k, format!("<code>{}</code>", esc(v)));
    }
    if !m.errors.is_empty() {
        row(
            "Errors",
            m.errors
                .iter()
                .map(|e| esc(e))
                .collect::<Vec<_>>()
                .join("<br>"),
        );
    }
    o.push_str("</dl></header>");
}

fn steps(o: &mut String, r: &RunReport) {
    let m = &r.meta;
    if m.steps.is_empty() {
        return absent(
            o,
            "timeline",
            "Step timeline",
            "the manifest lists no steps",
        );
    }
    section_open(o, "timeline", "Step timeline", "data");
    o.push_str("<p class=\"legend\">");
    for s in ["succeeded", "failed", "running", "skipped", "cancelled"] {
        let c = plot::status_color(s);
        let _ = write!(
            o,
            "<span><i style=\"background:rgb({},{},{})\"></i>{s}</span>",
            c.0, c.1, c.2
        );
    }
    o.push_str(&fault_legend());
    o.push_str("</p>");
    let bars: Vec<Bar<'_>> = m
        .steps
        .iter()
        .map(|s| Bar {
            label: if s.attempts > 1 {
                format!("{} ×{}", s.name, s.attempts)
            } else {
                s.name.clone()
            },
            start: s.start,
            end: s.end,
            status: &s.status,
        })
        .collect();
    let _ = write!(
        o,
        "<figure class=\"chart\" data-chart=\"gantt\">{}</figure>",
        plot::gantt(&r.timeline, &bars)
    );
    o.push_str("<table><tr><th>step</th><th>kind</th><th>status</th><th>attempts</th><th>started</th><th>duration</th><th>error</th></tr>");
    for s in &m.steps {
        let dur = match (s.start, s.end) {
            (Some(a), Some(b)) => fmt_ms(u64::try_from(b - a).ok()),
            _ => "—".into(),
        };
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{dur}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&s.kind),
            status_badge(&s.status),
            s.attempts,
            fmt_time(s.start),
            esc(s.error.as_deref().and_then(|e| e.lines().next()).unwrap_or(""))
        );
    }
    o.push_str("</table></section>");
}

fn faults(o: &mut String, r: &RunReport) {
    let Some(faults) = &r.faults else {
        return absent(
            o,
            "faults",
            "Faults",
            "no fault_labels.json in the run folder",
        );
    };
    if faults.is_empty() {
        return absent(
            o,
            "faults",
            "Faults",
            "fault_labels.json lists no faults (a normal run)",
        );
    }
    section_open(o, "faults", "Faults", "data");
    o.push_str("<table><tr><th>step</th><th>kind</th><th>target pods</th><th>injected</th><th>recovered</th><th>active</th><th>status</th><th>verdicts</th></tr>");
    for f in faults {
        let active = match (f.injected, f.recovered) {
            (Some(a), Some(b)) => fmt_ms(u64::try_from(b - a).ok()),
            _ => "—".into(),
        };
        let pods = if f.pods.is_empty() {
            "—".to_string()
        } else {
            let ns = f
                .namespace
                .as_deref()
                .map(|n| format!("{n}/"))
                .unwrap_or_default();
            f.pods
                .iter()
                .map(|p| esc(&format!("{ns}{p}")))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let mut verdicts: Vec<String> = f.verdicts.iter().map(|v| esc(v)).collect();
        if let Some(e) = &f.error {
            verdicts.push(format!("error: {}", esc(e)));
        }
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}<br><small>{}</small></td><td>{pods}</td><td>{}<br><small>{}</small></td><td>{}<br><small>{}</small></td><td class=\"num\">{active}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.step),
            esc(&f.kind),
            esc(&f.mechanism),
            fmt_time(f.injected),
            esc(&f.injected_source),
            fmt_time(f.recovered),
            esc(&f.recovered_source),
            esc(&f.status),
            if verdicts.is_empty() { "—".into() } else { verdicts.join("<br>") }
        );
    }
    o.push_str("</table><p class=\"absent\">Times marked <em>controller</em> are the chaos controller's own records; <em>ttplan</em> marks ttplan's clock.</p></section>");
}

fn chart(o: &mut String, name: &str, svg: String) {
    let _ = write!(
        o,
        "<figure class=\"chart\" data-chart=\"{}\">{svg}</figure>",
        esc(name)
    );
}

fn metrics(o: &mut String, r: &RunReport, tl: &Timeline) {
    let m = match &r.metrics {
        Section::Absent(why) => return absent(o, "metrics", "Metrics", why),
        Section::Data(m) => m,
    };
    section_open(o, "metrics", "Metrics", "data");
    let _ = write!(
        o,
        "<p>{} rows, {} series from {} queries in {} file(s). <span class=\"legend\">{}</span></p>",
        m.rows,
        m.series,
        m.queries,
        m.files.len(),
        fault_legend()
    );
    problems(o, &m.problems);
    if m.bad_rows > m.problems.len() as u64 {
        let _ = write!(
            o,
            "<p class=\"problems\">{} unreadable rows in all.</p>",
            m.bad_rows
        );
    }
    target_pod_panels(o, m, tl);
    changed_series(o, m, tl);
    o.push_str("</section>");
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn traces(o: &mut String, r: &RunReport, tl: &Timeline) {
    let t = match &r.traces {
        Section::Absent(why) => return absent(o, "traces", "Traces", why),
        Section::Data(t) => t,
    };
    section_open(o, "traces", "Traces", "data");
    let _ = write!(
        o,
        "<p>{} traces ({} spans) in {} file(s), {} with errors.</p>",
        t.traces,
        t.spans,
        t.files.len(),
        t.errors
    );
    problems(o, &t.problems);
    o.push_str(PHASE_HEAD);
    phase_row(
        o,
        "traces",
        [0, 1, 2].map(|i| t.phase_traces[i].to_string()),
    );
    phase_row(
        o,
        "error rate",
        [Phase::WarmUp, Phase::Fault, Phase::After].map(|p| pct(t.error_rate(p))),
    );
    o.push_str("</table>");
    trace_rate_charts(o, t, tl);
    service_latencies(o, t, tl);
    o.push_str("</section>");
}

/// One chart per kind (CPU, memory, network, restarts) of the fault targets' containers.
fn target_pod_panels(o: &mut String, m: &MetricsAgg, tl: &Timeline) {
    o.push_str("<h3>Fault target pods</h3>");
    if m.target_pods.is_empty() {
        o.push_str("<p class=\"absent\">No target pods: fault_labels.json names none.</p>");
    } else if m.panels.is_empty() {
        let _ = write!(
            o,
            "<p class=\"absent\">No container CPU, memory, network or restart series for {}.</p>",
            esc(&m.target_pods.join(", "))
        );
    } else {
        for p in &m.panels {
            let lines: Vec<Series<'_>> = p
                .lines
                .iter()
                .map(|l| Series {
                    label: &l.label,
                    points: &l.points,
                })
                .collect();
            chart(
                o,
                &format!("target-{:?}", p.kind),
                plot::time_chart(p.kind.title(), "", tl, &lines, 230),
            );
        }
    }
}

/// The series that moved most between warm-up and fault: a table, then a chart each.
fn changed_series(o: &mut String, m: &MetricsAgg, tl: &Timeline) {
    o.push_str("<h3>Series that changed most between warm-up and fault</h3>");
    if !tl.has_fault() {
        o.push_str("<p class=\"absent\">No fault window: nothing to compare.</p>");
    } else if m.changed.is_empty() {
        o.push_str("<p class=\"absent\">No series moved by a warm-up standard deviation (or 5 % of its level) between the warm-up and the fault.</p>");
    } else {
        o.push_str("<table><tr><th>#</th><th>series</th><th>warm-up mean</th><th>fault mean</th><th>change (warm-up σ)</th></tr>");
        for (i, c) in m.changed.iter().enumerate() {
            let _ = write!(
                o,
                "<tr><td class=\"num\">{}</td><td><code>{}</code>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td></tr>",
                i + 1,
                esc(&c.series),
                if c.rate { " <small>(per-second rate)</small>" } else { "" },
                num(Some(c.warm_up)),
                num(Some(c.fault)),
                c.score
            );
        }
        o.push_str("</table>");
        for (i, c) in m.changed.iter().enumerate() {
            let title = format!("#{} {}", i + 1, truncate(&c.series, 110));
            chart(
                o,
                &format!("changed-{}", i + 1),
                plot::time_chart(
                    &title,
                    "",
                    tl,
                    &[Series {
                        label: "",
                        points: &c.points,
                    }],
                    190,
                ),
            );
        }
    }
}

/// Traces per minute and the share of them with errors, over the timeline.
fn trace_rate_charts(o: &mut String, t: &TraceAgg, tl: &Timeline) {
    let per_min = 60_000.0 / tl.bin_ms as f64;
    let rate: Vec<(Ms, f64)> = t
        .per_bin
        .iter()
        .enumerate()
        .map(|(i, b)| (tl.bin_mid(i), b.0 as f64 * per_min))
        .collect();
    let err: Vec<(Ms, f64)> = t
        .per_bin
        .iter()
        .enumerate()
        .filter(|(_, b)| b.0 > 0)
        .map(|(i, b)| (tl.bin_mid(i), b.1 as f64 * 100.0 / b.0 as f64))
        .collect();
    chart(
        o,
        "traces-per-minute",
        plot::time_chart(
            "Traces per minute",
            "traces/min",
            tl,
            &[Series {
                label: "",
                points: &rate,
            }],
            220,
        ),
    );
    chart(
        o,
        "trace-error-rate",
        plot::time_chart(
            "Error rate (% of traces)",
            "%",
            tl,
            &[Series {
                label: "",
                points: &err,
            }],
            220,
        ),
    );
}

/// p50/p95 entry-span duration of the busiest services: charts, then a warm-up → fault table.
fn service_latencies(o: &mut String, t: &TraceAgg, tl: &Timeline) {
    let top = &t.services[..t.services.len().min(TOP_SERVICES)];
    if top.is_empty() {
        o.push_str("<p class=\"absent\">No spans with a service and a duration.</p>");
    } else {
        for (q, name) in [(0usize, "p50"), (1, "p95")] {
            let pts: Vec<Vec<(Ms, f64)>> = top
                .iter()
                .map(|s| {
                    s.series
                        .iter()
                        .map(|&(t, p50, p95)| (t, if q == 0 { p50 } else { p95 }))
                        .collect()
                })
                .collect();
            let lines: Vec<Series<'_>> = top
                .iter()
                .zip(&pts)
                .map(|(s, p)| Series {
                    label: &s.service,
                    points: p,
                })
                .collect();
            chart(
                o,
                &format!("latency-{name}"),
                plot::time_chart(
                    &format!("{name} entry-span duration by service (ms)"),
                    "ms",
                    tl,
                    &lines,
                    260,
                ),
            );
        }
        o.push_str("<table><tr><th>service</th><th>entry spans</th><th>errors</th><th>p50 warm-up → fault (ms)</th><th>p95 warm-up → fault (ms)</th><th>error rate warm-up → fault</th></tr>");
        for s in top {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} → {}</td><td class=\"num\">{} → {}</td><td class=\"num\">{} → {}</td></tr>",
                esc(&s.service), s.spans, s.errors,
                num(s.p50[0]), num(s.p50[1]), num(s.p95[0]), num(s.p95[1]),
                pct(s.error_rate[0]), pct(s.error_rate[1])
            );
        }
        o.push_str(
            "</table><p class=\"absent\">Quantiles from log-scale histograms (within 6 %).</p>",
        );
    }
}

fn api(o: &mut String, r: &RunReport, tl: &Timeline) {
    let a = match &r.api {
        Section::Absent(why) => return absent(o, "api", "API responses", why),
        Section::Data(a) => a,
    };
    section_open(o, "api", "API responses", "data");
    let _ = write!(
        o,
        "<p>{} requests in {} file(s).</p>",
        a.requests,
        a.files.len()
    );
    problems(o, &a.problems);
    if a.bad_lines > a.problems.len() as u64 {
        let _ = write!(
            o,
            "<p class=\"problems\">{} unreadable lines in all.</p>",
            a.bad_lines
        );
    }
    o.push_str(PHASE_HEAD);
    phase_row(
        o,
        "requests",
        [0, 1, 2].map(|i| a.phase_requests[i].to_string()),
    );
    phase_row(
        o,
        "4xx/5xx/no answer",
        [Phase::WarmUp, Phase::Fault, Phase::After].map(|p| pct(a.failure_rate(p))),
    );
    o.push_str("</table>");
    let per_min = 60_000.0 / tl.bin_ms as f64;
    let pts: Vec<Vec<(Ms, f64)>> = (0..CLASSES.len())
        .map(|c| {
            a.per_bin
                .iter()
                .enumerate()
                .map(|(i, b)| (tl.bin_mid(i), b[c] as f64 * per_min))
                .collect()
        })
        .collect();
    let lines: Vec<Series<'_>> = CLASSES
        .iter()
        .zip(&pts)
        .filter(|(_, p)| p.iter().any(|x| x.1 > 0.0))
        .map(|(c, p)| Series {
            label: c,
            points: p,
        })
        .collect();
    chart(
        o,
        "api-status-classes",
        plot::time_chart(
            "Requests per minute by status class",
            "req/min",
            tl,
            &lines,
            240,
        ),
    );
    o.push_str("<h3>Top failing endpoints</h3>");
    if a.endpoints.is_empty() {
        o.push_str("<p class=\"absent\">No request failed.</p>");
    } else {
        o.push_str("<table><tr><th>endpoint</th><th>requests</th><th>failures</th><th>in the fault window</th><th>4xx</th><th>5xx</th><th>no answer</th></tr>");
        for e in &a.endpoints {
            let _ = write!(
                o,
                "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&e.endpoint), e.requests, e.failures, e.fault_failures, e.by_class[2], e.by_class[3], e.by_class[4]
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section>");
}

fn logs(o: &mut String, r: &RunReport, tl: &Timeline) {
    let l = match &r.logs {
        Section::Absent(why) => return absent(o, "logs", "Logs", why),
        Section::Data(l) => l,
    };
    section_open(o, "logs", "Logs", "data");
    let _ = write!(
        o,
        "<p>{} lines from {} pods in <code>{}</code>, {} error/exception lines.</p>",
        l.lines,
        l.pods.len(),
        esc(&l.dir.display().to_string()),
        l.errors
    );
    problems(o, &l.problems);
    o.push_str(PHASE_HEAD);
    phase_row(
        o,
        "error lines",
        [Phase::WarmUp, Phase::Fault, Phase::After].map(|p| l.phase_errors(p).to_string()),
    );
    o.push_str("</table>");
    let top: Vec<_> = l
        .pods
        .iter()
        .filter(|p| p.errors > 0)
        .take(TOP_PODS)
        .collect();
    if top.is_empty() {
        o.push_str("<p class=\"absent\">No error or exception lines.</p>");
    } else {
        let pts: Vec<Vec<(Ms, f64)>> = top
            .iter()
            .map(|p| {
                p.per_bin
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (tl.bin_mid(i), *n as f64))
                    .collect()
            })
            .collect();
        let lines: Vec<Series<'_>> = top
            .iter()
            .zip(&pts)
            .map(|(p, pts)| Series {
                label: &p.pod,
                points: pts,
            })
            .collect();
        let title = format!(
            "Error/exception lines per {} by pod",
            fmt_ms(u64::try_from(tl.bin_ms).ok())
        );
        chart(
            o,
            "log-errors",
            plot::time_chart(&title, "lines", tl, &lines, 260),
        );
        o.push_str("<table><tr><th>pod</th><th>files</th><th>lines</th><th>error lines</th><th>warm-up</th><th>fault</th><th>after</th><th>without time</th></tr>");
        for p in &top {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&p.pod), p.files, p.lines, p.errors, p.phase_errors[0], p.phase_errors[1], p.phase_errors[2], p.untimed_errors
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section>");
}

fn coverage(o: &mut String, r: &RunReport) {
    let rows = match &r.coverage {
        Section::Absent(why) => return absent(o, "coverage", "Coverage", why),
        Section::Data(c) => c,
    };
    section_open(o, "coverage", "Coverage", "data");
    let bars: Vec<(String, f64)> = rows
        .iter()
        .map(|c| (c.service.clone(), c.percent.unwrap_or(0.0)))
        .collect();
    chart(o, "coverage", plot::percent_bars(&bars));
    o.push_str("<table><tr><th>service</th><th>lines</th><th>line coverage</th></tr>");
    for c in rows {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&c.service),
            c.lines,
            c.percent
                .map_or_else(|| "n/a".into(), |p| format!("{p:.0} %"))
        );
    }
    o.push_str("</table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
