//! The trace file, streamed one trace at a time: `{metadata, traces: […]}` (the dataset's
//! `.json`) or one trace per line (`.jsonl`). Per time bin: traces and errors; per service and
//! bin: a log-scale histogram of its entry spans' durations, from which p50/p95 are read.

use std::collections::HashMap;
use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::timeline::{Ms, Phase, Timeline};

/// Services drawn in the latency plots.
pub const TOP_SERVICES: usize = 6;

/// Durations from 0.01 ms to ~10^6 ms in buckets 12 % apart: quantiles within 6 %.
const HIST_BUCKETS: usize = 160;
const HIST_MIN_MS: f64 = 0.01;
const HIST_GROWTH: f64 = 1.12;

#[derive(Debug, Clone)]
pub struct LogHistogram {
    counts: Vec<u32>,
    n: u64,
}

impl Default for LogHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; HIST_BUCKETS],
            n: 0,
        }
    }
}

impl LogHistogram {
    fn bucket(ms: f64) -> usize {
        if ms <= HIST_MIN_MS {
            return 0;
        }
        let b = ((ms / HIST_MIN_MS).ln() / HIST_GROWTH.ln()).floor() as usize + 1;
        b.min(HIST_BUCKETS - 1)
    }

    /// The middle (geometric) of bucket `b`.
    fn value(b: usize) -> f64 {
        if b == 0 {
            return HIST_MIN_MS;
        }
        HIST_MIN_MS * HIST_GROWTH.powf(b as f64 - 0.5)
    }

    pub fn add(&mut self, ms: f64) {
        self.counts[Self::bucket(ms.max(0.0))] += 1;
        self.n += 1;
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    /// The `q` quantile (0..=1), `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0u64;
        for (b, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return Some(Self::value(b));
            }
        }
        None
    }
}

#[derive(Debug, Deserialize)]
struct SummaryLite {
    #[serde(default, alias = "startTimestampMs", alias = "start_time")]
    start_timestamp_ms: Option<f64>,
    #[serde(default, alias = "isError")]
    is_error: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct SpanLite {
    #[serde(default, alias = "serviceCode")]
    service_code: Option<String>,
    #[serde(default, alias = "startTime")]
    start_timestamp_ms: Option<f64>,
    #[serde(default, alias = "endTime")]
    end_timestamp_ms: Option<f64>,
    #[serde(default)]
    duration_ms: Option<f64>,
    #[serde(default, alias = "isError")]
    is_error: Option<bool>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TraceLite {
    #[serde(default)]
    summary: Option<SummaryLite>,
    #[serde(default)]
    spans: Vec<SpanLite>,
}

#[derive(Debug, Default)]
struct ServiceStats {
    spans: u64,
    errors: u64,
    by_bin: Vec<Option<LogHistogram>>,
    by_phase: [LogHistogram; 3],
    errors_by_phase: [u64; 3],
}

#[derive(Debug, Clone)]
pub struct ServiceRow {
    pub service: String,
    pub spans: u64,
    pub errors: u64,
    /// p50 and p95 of entry-span durations per phase (warm-up, fault, after), ms.
    pub p50: [Option<f64>; 3],
    pub p95: [Option<f64>; 3],
    pub error_rate: [Option<f64>; 3],
    /// Per bin: (bin middle, p50, p95).
    pub series: Vec<(Ms, f64, f64)>,
}

#[derive(Debug, Default)]
pub struct TraceAgg {
    pub files: Vec<PathBuf>,
    pub traces: u64,
    pub errors: u64,
    pub spans: u64,
    pub per_bin: Vec<(u64, u64)>,
    pub phase_traces: [u64; 3],
    pub phase_errors: [u64; 3],
    pub services: Vec<ServiceRow>,
    pub problems: Vec<String>,
    service_index: HashMap<String, ServiceStats>,
}

impl TraceAgg {
    fn add(&mut self, tl: &Timeline, t: TraceLite) {
        let start = t
            .summary
            .as_ref()
            .and_then(|s| s.start_timestamp_ms)
            .or_else(|| {
                t.spans
                    .iter()
                    .filter_map(|s| s.start_timestamp_ms)
                    .reduce(f64::min)
            });
        let Some(start) = start else {
            self.problem("a trace without a start time was skipped".into());
            return;
        };
        let is_error = t
            .summary
            .as_ref()
            .and_then(|s| s.is_error)
            .unwrap_or_else(|| t.spans.iter().any(|s| s.is_error == Some(true)));
        let (bin, phase) = (tl.bin(start as Ms), tl.phase(start as Ms) as usize);
        self.traces += 1;
        self.per_bin[bin].0 += 1;
        self.phase_traces[phase] += 1;
        if is_error {
            self.errors += 1;
            self.per_bin[bin].1 += 1;
            self.phase_errors[phase] += 1;
        }
        // A service's latency is that of the requests it served: its entry spans (all spans
        // when the file carries no span types).
        let typed = t.spans.iter().any(|s| s.kind.is_some());
        for s in &t.spans {
            self.spans += 1;
            if typed && s.kind.as_deref() != Some("Entry") {
                continue;
            }
            let Some(service) = &s.service_code else {
                continue;
            };
            let dur = s
                .duration_ms
                .or_else(|| Some(s.end_timestamp_ms? - s.start_timestamp_ms?));
            let Some(dur) = dur.filter(|d| d.is_finite()) else {
                continue;
            };
            let at = s.start_timestamp_ms.unwrap_or(start) as Ms;
            let (b, p) = (tl.bin(at), tl.phase(at) as usize);
            let st = self.service_index.entry(service.clone()).or_default();
            if st.by_bin.is_empty() {
                st.by_bin = vec![None; tl.bins];
            }
            st.spans += 1;
            st.by_bin[b]
                .get_or_insert_with(LogHistogram::default)
                .add(dur);
            st.by_phase[p].add(dur);
            if s.is_error == Some(true) {
                st.errors += 1;
                st.errors_by_phase[p] += 1;
            }
        }
    }

    fn problem(&mut self, msg: String) {
        if self.problems.len() < 5 && !self.problems.contains(&msg) {
            self.problems.push(msg);
        }
    }

    fn file(&mut self, tl: &Timeline, path: &Path) {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => return self.problem(format!("{}: {e}", path.display())),
        };
        let reader = BufReader::with_capacity(1 << 20, file);
        let jsonl = path.extension().is_some_and(|e| e == "jsonl");
        let result = if jsonl {
            let mut n = 0u64;
            let mut res = Ok(());
            for t in serde_json::Deserializer::from_reader(reader).into_iter::<TraceLite>() {
                n += 1;
                match t {
                    Ok(t) => self.add(tl, t),
                    Err(e) => {
                        res = Err(format!("trace {n}: {e}"));
                        break;
                    }
                }
            }
            res
        } else {
            let mut de = serde_json::Deserializer::from_reader(reader);
            Document { agg: self, tl }
                .deserialize(&mut de)
                .map_err(|e| e.to_string())
        };
        if let Err(e) = result {
            // A killed collector leaves a cut file: what was read still counts.
            self.problem(format!(
                "{}: {e} (the traces before it are shown)",
                path.display()
            ));
        }
    }

    pub fn from_files(files: &[PathBuf], tl: &Timeline) -> Self {
        let mut agg = TraceAgg {
            files: files.to_vec(),
            per_bin: vec![(0, 0); tl.bins],
            ..Default::default()
        };
        for f in files {
            agg.file(tl, f);
        }
        let mut services: Vec<(String, ServiceStats)> = agg.service_index.drain().collect();
        services.sort_by(|a, b| b.1.spans.cmp(&a.1.spans).then(a.0.cmp(&b.0)));
        agg.services = services
            .into_iter()
            .map(|(service, st)| {
                let q = |h: &LogHistogram, q: f64| h.quantile(q);
                let rate = |i: usize| {
                    let n = st.by_phase[i].count();
                    (n > 0).then(|| st.errors_by_phase[i] as f64 / n as f64)
                };
                ServiceRow {
                    series: st
                        .by_bin
                        .iter()
                        .enumerate()
                        .filter_map(|(i, h)| {
                            let h = h.as_ref()?;
                            Some((tl.bin_mid(i), h.quantile(0.5)?, h.quantile(0.95)?))
                        })
                        .collect(),
                    p50: [0, 1, 2].map(|i| q(&st.by_phase[i], 0.5)),
                    p95: [0, 1, 2].map(|i| q(&st.by_phase[i], 0.95)),
                    error_rate: [0, 1, 2].map(rate),
                    service,
                    spans: st.spans,
                    errors: st.errors,
                }
            })
            .collect();
        agg
    }

    pub fn error_rate(&self, phase: Phase) -> Option<f64> {
        let i = phase as usize;
        (self.phase_traces[i] > 0)
            .then(|| self.phase_errors[i] as f64 / self.phase_traces[i] as f64)
    }
}

/// The top-level document: `traces` is visited element by element, everything else skipped.
/// A bare list of traces is accepted too.
struct Document<'a> {
    agg: &'a mut TraceAgg,
    tl: &'a Timeline,
}

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with a `traces` list, or a list of traces")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "traces" {
                map.next_value_seed(TraceList {
                    agg: &mut *self.agg,
                    tl: self.tl,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        TraceList {
            agg: self.agg,
            tl: self.tl,
        }
        .visit_seq(seq)
    }
}

struct TraceList<'a> {
    agg: &'a mut TraceAgg,
    tl: &'a Timeline,
}

impl<'de> DeserializeSeed<'de> for TraceList<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TraceList<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of traces")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(t) = seq.next_element::<TraceLite>()? {
            self.agg.add(self.tl, t);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::timeline::Window;
    use serde_json::json;

    #[test]
    fn histogram_quantiles_are_within_the_bucket_width() {
        let mut h = LogHistogram::default();
        for v in 1..=1000 {
            h.add(f64::from(v));
        }
        let p50 = h.quantile(0.5).unwrap();
        let p95 = h.quantile(0.95).unwrap();
        assert!((p50 / 500.0 - 1.0).abs() < 0.07, "{p50}");
        assert!((p95 / 950.0 - 1.0).abs() < 0.07, "{p95}");
        assert_eq!(LogHistogram::default().quantile(0.5), None);
    }

    fn trace(start: i64, error: bool, dur: f64) -> serde_json::Value {
        json!({
            "summary": {"trace_id": "t", "duration_ms": dur, "start_timestamp_ms": start, "is_error": error},
            "span_count": 2,
            "spans": [
                {"service_code": "ts-preserve-service", "type": "Entry", "start_timestamp_ms": start,
                 "end_timestamp_ms": start + dur as i64, "duration_ms": dur, "is_error": error, "tags": []},
                {"service_code": "ts-preserve-service", "type": "Exit", "start_timestamp_ms": start,
                 "duration_ms": 1.0, "is_error": false},
            ]
        })
    }

    fn timeline() -> Timeline {
        Timeline::new(
            0,
            1_800_000,
            vec![Window {
                start: 600_000,
                end: 1_199_999,
            }],
        )
    }

    #[test]
    fn a_document_is_streamed_and_the_fault_shows_in_errors_and_latency() {
        let d = tempfile::tempdir().unwrap();
        let traces: Vec<_> = (0..180)
            .map(|i| {
                let t = i * 10_000;
                let fault = (600_000..1_200_000).contains(&t);
                trace(t, fault && i % 2 == 0, if fault { 400.0 } else { 40.0 })
            })
            .collect();
        let doc = json!({"metadata": {"collected_traces": 180}, "traces": traces, "after": [1]});
        let p = d.path().join("E_skywalking_traces_1.json");
        std::fs::write(&p, doc.to_string()).unwrap();
        let a = TraceAgg::from_files(&[p], &timeline());
        assert_eq!((a.traces, a.errors, a.spans), (180, 30, 360));
        assert_eq!(a.error_rate(Phase::WarmUp), Some(0.0));
        assert_eq!(a.error_rate(Phase::Fault), Some(0.5));
        let s = &a.services[0];
        assert_eq!(s.spans, 180, "only entry spans");
        let (w, f) = (s.p50[0].unwrap(), s.p50[1].unwrap());
        assert!(
            (w / 40.0 - 1.0).abs() < 0.07 && (f / 400.0 - 1.0).abs() < 0.07,
            "{w} {f}"
        );
        assert_eq!(a.per_bin.iter().map(|b| b.0).sum::<u64>(), 180);
    }

    #[test]
    fn jsonl_and_camel_case_spans_are_read_and_a_cut_file_keeps_what_it_had() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("E_skywalking_traces_1.jsonl");
        let camel = json!({"spans": [{"serviceCode": "a", "startTime": 1000, "endTime": 1100, "isError": true}]});
        std::fs::write(
            &p,
            format!("{}\n{}\n{{\"spans\": [", trace(0, false, 5.0), camel),
        )
        .unwrap();
        let a = TraceAgg::from_files(&[p], &timeline());
        assert_eq!((a.traces, a.errors), (2, 1));
        assert_eq!(a.problems.len(), 1, "{:?}", a.problems);
        let svc_a = a.services.iter().find(|s| s.service == "a").unwrap();
        assert!((svc_a.p50[0].unwrap() / 100.0 - 1.0).abs() < 0.07);
    }
}
