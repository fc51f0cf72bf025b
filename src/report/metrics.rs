//! The metrics CSV (`metric_name,timestamp,datetime,value,<labels…>`, long format), streamed
//! row by row. Per series it keeps phase statistics and a fixed number of time bins, so memory
//! grows with the number of series, not of rows. Counters (a bare `…_total` query) are turned
//! into per-second rates between consecutive samples before anything is compared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::timeline::{Ms, Phase, PhaseMeans, Timeline};

/// Series plotted in "changed most between warm-up and fault".
pub const TOP_CHANGED: usize = 6;
/// Lines per target-pod panel.
const PANEL_LINES: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PanelKind {
    Cpu,
    Memory,
    Network,
    Restarts,
}

impl PanelKind {
    pub fn title(self) -> &'static str {
        match self {
            PanelKind::Cpu => "CPU (cores)",
            PanelKind::Memory => "Memory (MiB)",
            PanelKind::Network => "Network (bytes/s, errors/s)",
            PanelKind::Restarts => "Container restarts",
        }
    }

    /// Which panel a query feeds, by the metric it reads (working set over usage for memory).
    fn of(query: &str) -> Option<(Self, u8)> {
        if query.contains("container_cpu_usage_seconds_total") {
            Some((PanelKind::Cpu, 0))
        } else if query.contains("container_memory_working_set_bytes") {
            Some((PanelKind::Memory, 0))
        } else if query.contains("container_memory_usage_bytes") {
            Some((PanelKind::Memory, 1))
        } else if query.contains("container_network_") {
            Some((PanelKind::Network, 0))
        } else if query.contains("kube_pod_container_status_restarts_total") {
            Some((PanelKind::Restarts, 0))
        } else {
            None
        }
    }

    fn scale(self) -> f64 {
        match self {
            PanelKind::Memory => 1.0 / (1024.0 * 1024.0),
            _ => 1.0,
        }
    }
}

/// A downsampled line: (bin middle, mean of the bin).
#[derive(Debug, Clone)]
pub struct Line {
    pub label: String,
    pub points: Vec<(Ms, f64)>,
}

#[derive(Debug, Clone)]
pub struct Panel {
    pub kind: PanelKind,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone)]
pub struct Changed {
    pub series: String,
    pub warm_up: f64,
    pub fault: f64,
    pub score: f64,
    pub rate: bool,
    pub points: Vec<(Ms, f64)>,
}

#[derive(Debug, Default)]
pub struct MetricsAgg {
    pub files: Vec<PathBuf>,
    pub rows: u64,
    pub series: usize,
    pub queries: usize,
    /// Rows that could not be read, with the first few reasons (file:line).
    pub bad_rows: u64,
    pub problems: Vec<String>,
    pub target_pods: Vec<String>,
    pub panels: Vec<Panel>,
    pub changed: Vec<Changed>,
}

/// Whether a query returns a raw counter (a bare `name_total` / `name{…}` selector).
pub fn is_counter_query(query: &str) -> bool {
    let q = query.trim();
    let name_end = q
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(q.len());
    let rest = q[name_end..].trim_start();
    let bare = rest.is_empty() || (rest.starts_with('{') && rest.ends_with('}'));
    bare && q[..name_end].ends_with("_total")
}

/// Mean, variance (Welford) of the warm-up values: the yardstick of "changed".
#[derive(Debug, Clone, Copy, Default)]
struct Welford {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Welford {
    fn add(&mut self, v: f64) {
        self.n += 1;
        let d = v - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (v - self.mean);
    }

    fn sd(&self) -> f64 {
        if self.n > 1 {
            (self.m2 / (self.n - 1) as f64).sqrt()
        } else {
            0.0
        }
    }
}

/// How far the fault mean moved from the warm-up, in warm-up standard deviations, with a floor
/// of 5 % of the level so a flat series that moves a little does not dominate.
pub fn change_score(warm_mean: f64, warm_sd: f64, fault_mean: f64) -> f64 {
    let scale = warm_sd + 0.05 * warm_mean.abs().max(fault_mean.abs()) + 1e-12;
    (fault_mean - warm_mean).abs() / scale
}

#[derive(Debug)]
struct Series {
    label: String,
    rate: bool,
    panel: Option<(PanelKind, u8, String)>,
    last: Option<(Ms, f64)>,
    warm: Welford,
    phases: PhaseMeans,
    bins: Vec<(f32, u32)>,
}

impl Series {
    fn add(&mut self, tl: &Timeline, t: Ms, raw: f64) {
        let v = if self.rate {
            let prev = self.last.replace((t, raw));
            match prev {
                // A reset (restart) or out-of-order sample gives no rate.
                Some((pt, pv)) if t > pt && raw >= pv => (raw - pv) * 1000.0 / (t - pt) as f64,
                _ => return,
            }
        } else {
            raw
        };
        let phase = tl.phase(t);
        if phase == Phase::WarmUp {
            self.warm.add(v);
        }
        self.phases.add(phase, v);
        if self.bins.is_empty() {
            self.bins = vec![(0.0, 0); tl.bins];
        }
        let b = &mut self.bins[tl.bin(t)];
        b.0 += v as f32;
        b.1 += 1;
    }

    fn points(&self, tl: &Timeline, scale: f64) -> Vec<(Ms, f64)> {
        self.bins
            .iter()
            .enumerate()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(i, (s, n))| (tl.bin_mid(i), f64::from(*s) / f64::from(*n) * scale))
            .collect()
    }
}

struct Columns {
    name: usize,
    ts: usize,
    value: usize,
    /// (index, header) of every label column.
    labels: Vec<(usize, String)>,
    pod: Option<usize>,
    container: Option<usize>,
}

fn columns(header: &csv::StringRecord) -> Option<Columns> {
    let find = |n: &str| header.iter().position(|h| h == n);
    let (name, ts, value) = (find("metric_name")?, find("timestamp")?, find("value")?);
    let labels = header
        .iter()
        .enumerate()
        .filter(|(i, h)| ![name, ts, value].contains(i) && *h != "datetime" && *h != "__name__")
        .map(|(i, h)| (i, h.to_string()))
        .collect();
    Some(Columns {
        name,
        ts,
        value,
        labels,
        pod: find("pod").or_else(|| find("pod_name")),
        container: find("container").or_else(|| find("container_name")),
    })
}

fn field(rec: &csv::ByteRecord, i: usize) -> &[u8] {
    rec.get(i).unwrap_or_default()
}

fn parse_f64(b: &[u8]) -> Option<f64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

struct Builder<'a> {
    tl: &'a Timeline,
    targets: &'a [String],
    series: Vec<Series>,
    index: HashMap<Vec<u8>, usize>,
    queries: std::collections::HashSet<Vec<u8>>,
    agg: MetricsAgg,
}

impl Builder<'_> {
    fn problem(&mut self, msg: String) {
        self.agg.bad_rows += 1;
        if self.agg.problems.len() < 5 {
            self.agg.problems.push(msg);
        }
    }

    fn new_series(&mut self, rec: &csv::ByteRecord, cols: &Columns) -> Series {
        let query = String::from_utf8_lossy(field(rec, cols.name)).into_owned();
        let labels: Vec<String> = cols
            .labels
            .iter()
            .filter(|(i, _)| !field(rec, *i).is_empty())
            .map(|(i, h)| format!("{h}=\"{}\"", String::from_utf8_lossy(field(rec, *i))))
            .collect();
        let pod = cols
            .pod
            .map(|i| String::from_utf8_lossy(field(rec, i)).into_owned());
        let container = cols
            .container
            .map(|i| String::from_utf8_lossy(field(rec, i)).into_owned())
            .unwrap_or_default();
        let panel = match (PanelKind::of(&query), pod) {
            // cAdvisor's pause-container series says nothing about the workload.
            (Some((k, pref)), Some(p)) if container != "POD" && self.targets.contains(&p) => {
                let what = if container.is_empty() {
                    p
                } else {
                    format!("{p}/{container}")
                };
                let what = if k == PanelKind::Network {
                    let short = query
                        .split("container_network_")
                        .nth(1)
                        .and_then(|s| s.split(|c: char| !(c.is_alphanumeric() || c == '_')).next())
                        .unwrap_or("");
                    format!("{what} {short}")
                } else {
                    what
                };
                Some((k, pref, what))
            }
            _ => None,
        };
        let rate = is_counter_query(&query) && !matches!(panel, Some((PanelKind::Restarts, ..)));
        let label = if labels.is_empty() {
            query
        } else {
            format!("{query} {{{}}}", labels.join(", "))
        };
        Series {
            label,
            rate,
            panel,
            last: None,
            warm: Welford::default(),
            phases: PhaseMeans::default(),
            bins: Vec::new(),
        }
    }

    fn file(&mut self, path: &Path) {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => return self.problem(format!("{}: {e}", path.display())),
        };
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .buffer_capacity(1 << 20)
            .from_reader(file);
        let cols = match rdr.headers().ok().and_then(columns) {
            Some(c) => c,
            None => {
                return self.problem(format!(
                    "{}: not a metrics CSV (the header needs metric_name, timestamp, value)",
                    path.display()
                ))
            }
        };
        let mut rec = csv::ByteRecord::new();
        let mut key: Vec<u8> = Vec::with_capacity(256);
        let mut last_key: Vec<u8> = Vec::new();
        let mut last_idx = usize::MAX;
        let mut line = 1u64;
        loop {
            line += 1;
            match rdr.read_byte_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    self.problem(format!("{}:{line}: {e}", path.display()));
                    if e.is_io_error() {
                        break;
                    }
                    continue;
                }
            }
            self.agg.rows += 1;
            let Some(t) = parse_f64(field(&rec, cols.ts)) else {
                self.problem(format!(
                    "{}:{line}: timestamp is not a number",
                    path.display()
                ));
                continue;
            };
            let raw = field(&rec, cols.value);
            // NaN is an empty cell.
            let Some(v) =
                (if raw.is_empty() { None } else { parse_f64(raw) }).filter(|v| v.is_finite())
            else {
                continue;
            };
            key.clear();
            key.extend_from_slice(field(&rec, cols.name));
            for (i, _) in &cols.labels {
                key.push(0x1f);
                key.extend_from_slice(field(&rec, *i));
            }
            // Rows come grouped by series: most rows hit the previous row's series.
            let idx = if key == last_key {
                last_idx
            } else {
                let idx = match self.index.get(&key) {
                    Some(&i) => i,
                    None => {
                        let s = self.new_series(&rec, &cols);
                        self.series.push(s);
                        self.index.insert(key.clone(), self.series.len() - 1);
                        self.queries.insert(field(&rec, cols.name).to_vec());
                        self.series.len() - 1
                    }
                };
                last_key.clone_from(&key);
                last_idx = idx;
                idx
            };
            self.series[idx].add(self.tl, (t * 1000.0) as Ms, v);
        }
    }

    fn finish(mut self) -> MetricsAgg {
        let tl = self.tl;
        let mut agg = std::mem::take(&mut self.agg);
        agg.series = self.series.len();
        agg.queries = self.queries.len();
        agg.target_pods = self.targets.to_vec();
        // Panels: per kind, the preferred metric only (working set over usage).
        let mut by_kind: std::collections::BTreeMap<PanelKind, Vec<(u8, &Series, &str)>> =
            Default::default();
        for s in &self.series {
            if let Some((k, pref, what)) = &s.panel {
                by_kind.entry(*k).or_default().push((*pref, s, what));
            }
        }
        for (kind, mut list) in by_kind {
            let best = list.iter().map(|(p, ..)| *p).min().unwrap_or(0);
            list.retain(|(p, ..)| *p == best);
            list.sort_by(|a, b| a.2.cmp(b.2));
            let lines = list
                .iter()
                .take(PANEL_LINES)
                .map(|(_, s, what)| Line {
                    label: (*what).to_string(),
                    points: s.points(tl, kind.scale()),
                })
                .collect();
            agg.panels.push(Panel { kind, lines });
        }
        if tl.has_fault() {
            let mut scored: Vec<(f64, usize)> = self
                .series
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.phases.count(Phase::WarmUp) >= 2 && s.phases.count(Phase::Fault) >= 2
                })
                .filter_map(|(i, s)| {
                    let (w, f) = (s.phases.mean(Phase::WarmUp)?, s.phases.mean(Phase::Fault)?);
                    Some((change_score(w, s.warm.sd(), f), i))
                })
                // Less than one warm-up σ (or 5 % of the level) is not a change worth a plot.
                .filter(|(score, _)| *score >= 1.0)
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (score, i) in scored.into_iter().take(TOP_CHANGED) {
                let s = &self.series[i];
                agg.changed.push(Changed {
                    series: s.label.clone(),
                    warm_up: s.phases.mean(Phase::WarmUp).unwrap_or(f64::NAN),
                    fault: s.phases.mean(Phase::Fault).unwrap_or(f64::NAN),
                    score,
                    rate: s.rate,
                    points: s.points(tl, 1.0),
                });
            }
        }
        agg
    }
}

impl MetricsAgg {
    pub fn from_files(files: &[PathBuf], tl: &Timeline, target_pods: &[String]) -> Self {
        let mut b = Builder {
            tl,
            targets: target_pods,
            series: Vec::new(),
            index: HashMap::new(),
            queries: Default::default(),
            agg: MetricsAgg {
                files: files.to_vec(),
                ..Default::default()
            },
        };
        for f in files {
            b.file(f);
        }
        b.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::timeline::Window;

    #[test]
    fn counters_are_bare_total_selectors() {
        assert!(is_counter_query("container_cpu_usage_seconds_total"));
        assert!(is_counter_query("http_requests_total{job=\"x\"}"));
        assert!(!is_counter_query("rate(node_cpu_seconds_total[5m])"));
        assert!(!is_counter_query("container_memory_usage_bytes"));
        assert!(!is_counter_query("sum(x_total)"));
    }

    #[test]
    fn change_score_ranks_a_jump_over_noise() {
        let jump = change_score(10.0, 0.5, 20.0);
        let noise = change_score(10.0, 0.5, 10.4);
        assert!(jump > 5.0 && noise < 1.0, "{jump} {noise}");
        assert_eq!(change_score(0.0, 0.0, 0.0), 0.0);
    }

    /// 10 min warm-up, 10 min fault, 10 min after; 15 s samples.
    fn write_csv(dir: &Path) -> PathBuf {
        let mut s = String::from("metric_name,timestamp,datetime,value,container,namespace,pod\n");
        let mut cpu = 0.0;
        for i in 0..120 {
            let t = i * 15;
            // The target burns 0.1 core, 0.9 during the fault: a counter in seconds.
            cpu += if (600..1200).contains(&t) {
                0.9 * 15.0
            } else {
                0.1 * 15.0
            };
            s.push_str(&format!(
                "container_cpu_usage_seconds_total,{t},x,{cpu},app,ns,ts-preserve-service-1\n"
            ));
        }
        for i in 0..120 {
            let t = i * 15;
            s.push_str(&format!(
                "container_cpu_usage_seconds_total,{t},x,{},app,ns,ts-other-1\n",
                f64::from(i) * 1.5
            ));
        }
        for i in 0..120 {
            let t = i * 15;
            let v = if i % 7 == 0 {
                String::new()
            } else {
                format!("{}", 100 * 1024 * 1024 + i)
            };
            s.push_str(&format!(
                "container_memory_working_set_bytes,{t},x,{v},app,ns,ts-preserve-service-1\n"
            ));
            s.push_str(&format!(
                "container_memory_working_set_bytes,{t},x,{v},POD,ns,ts-preserve-service-1\n"
            ));
        }
        s.push_str("up,notanumber,x,1,,,\n");
        let p = dir.join("E_metrics_20250101_000000.csv");
        std::fs::write(&p, s).unwrap();
        p
    }

    #[test]
    fn the_target_counter_that_jumps_ranks_first_and_feeds_the_cpu_panel() {
        let d = tempfile::tempdir().unwrap();
        let f = write_csv(d.path());
        let tl = Timeline::new(
            0,
            1_800_000,
            vec![Window {
                start: 600_000,
                end: 1_200_000,
            }],
        );
        let m = MetricsAgg::from_files(&[f], &tl, &["ts-preserve-service-1".to_string()]);
        assert_eq!(m.rows, 120 * 4 + 1);
        assert_eq!(m.bad_rows, 1);
        assert!(
            m.problems[0].contains(":482: timestamp"),
            "{:?}",
            m.problems
        );
        assert_eq!(m.series, 4);
        let top = &m.changed[0];
        assert!(
            top.series.contains("ts-preserve-service-1") && top.rate,
            "{top:?}"
        );
        assert!(
            (top.warm_up - 0.1).abs() < 0.02 && (top.fault - 0.9).abs() < 0.05,
            "{top:?}"
        );
        let cpu = m.panels.iter().find(|p| p.kind == PanelKind::Cpu).unwrap();
        assert_eq!(cpu.lines.len(), 1, "the other pod is not a target");
        let peak = cpu.lines[0].points.iter().map(|p| p.1).fold(0.0, f64::max);
        assert!((peak - 0.9).abs() < 0.05, "{peak}");
        let mem = m
            .panels
            .iter()
            .find(|p| p.kind == PanelKind::Memory)
            .unwrap();
        assert_eq!(mem.lines.len(), 1, "the POD series is left out");
        assert!((mem.lines[0].points[0].1 - 100.0).abs() < 0.01);
    }
}
