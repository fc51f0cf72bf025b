//! Prometheus metrics collection: range queries over a time window, written as one long CSV
//! (or one per query).
//!
//! Two passes keep memory independent of the number of samples: [`client`] streams every
//! chunk's response through [`parse`] into a [`spool`] file while only label sets stay in
//! memory; once every label name is known, [`csv_out`] writes the rows in a fixed order
//! (queries in plan order, series sorted by labels, samples in time order).

pub mod chunk;
pub mod client;
pub mod csv_out;
pub mod parse;
pub mod spool;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures_util::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use self::chunk::{chunks, Chunk, MAX_POINTS};
use self::client::{ClientOptions, FetchError, PromClient};
use self::csv_out::{write_csv, MergedSeries, Part, QueryData};

/// A PromQL query and the name its rows carry in `metric_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedQuery {
    pub name: String,
    pub query: String,
}

/// What to do when a query fails after retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnQueryError {
    /// Stop: no CSV is written and the error names the query.
    Fail,
    /// Write the other queries' data and list the failure in the report.
    Record,
}

/// Everything one collection needs.
#[derive(Debug, Clone)]
pub struct MetricsJob {
    pub endpoint: String,
    pub queries: Vec<NamedQuery>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
    pub concurrency: usize,
    pub client: ClientOptions,
    pub on_error: OnQueryError,
    /// The CSV; with `split`, the stem of one file per query (`<stem>_<query>.csv`).
    pub output: PathBuf,
    pub split: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryStatus {
    Ok,
    /// The query ran and matched no series in the window.
    Empty,
    Error,
}

impl QueryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QueryStatus::Ok => "ok",
            QueryStatus::Empty => "empty",
            QueryStatus::Error => "error",
        }
    }
}

/// One query's outcome.
#[derive(Debug, Clone)]
pub struct QueryReport {
    pub name: String,
    pub query: String,
    pub series: u64,
    pub samples: u64,
    pub status: QueryStatus,
    pub error: Option<String>,
    pub warnings: Vec<String>,
    /// The file holding its rows.
    pub file: Option<PathBuf>,
}

/// What a collection produced.
#[derive(Debug, Clone, Default)]
pub struct MetricsReport {
    pub queries: Vec<QueryReport>,
    pub files: Vec<PathBuf>,
    /// `(bytes, sha256)` of each of `files`, computed while writing.
    pub digests: Vec<(u64, String)>,
    pub rows: u64,
    pub bytes: u64,
    pub chunks_per_query: usize,
    pub requests: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("query `{name}` failed: {error}\n  query: {query}")]
    Query {
        name: String,
        query: String,
        error: FetchError,
    },
    #[error("{0}")]
    Setup(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> MetricsError {
    let context = context.into();
    move |source| MetricsError::Io { context, source }
}

/// Runs every query over the job's window and writes the CSV file(s) atomically.
///
/// # Errors
/// A failed query under [`OnQueryError::Fail`], an I/O failure, or cancellation.
pub async fn collect(
    job: &MetricsJob,
    cancel: &CancellationToken,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<MetricsReport, MetricsError> {
    let client = PromClient::new(&job.endpoint, job.client.clone()).map_err(MetricsError::Setup)?;
    let windows = chunks(job.start_ms, job.end_ms, job.step_ms, MAX_POINTS);
    let out_dir = job
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    std::fs::create_dir_all(&out_dir).map_err(io_err(format!("creating {}", out_dir.display())))?;
    // Beside the output (same disk, not a possibly memory-backed /tmp); removed on drop.
    let spool_dir = tempfile::Builder::new()
        .prefix(".ttplan-metrics-spool-")
        .tempdir_in(&out_dir)
        .map_err(io_err(format!(
            "creating a spool folder in {}",
            out_dir.display()
        )))?;

    let total = job.queries.len() * windows.len();
    let done = AtomicUsize::new(0);
    let failed: Vec<AtomicBool> = job.queries.iter().map(|_| AtomicBool::new(false)).collect();
    let spool_path = |qi: usize, ci: usize| spool_dir.path().join(format!("q{qi}-c{ci}.spool"));
    progress(format!("0/{total} requests"));

    let mut results: Vec<Vec<Option<parse::Parsed>>> = job
        .queries
        .iter()
        .map(|_| (0..windows.len()).map(|_| None).collect())
        .collect();
    let mut errors: Vec<Option<FetchError>> = job.queries.iter().map(|_| None).collect();
    {
        let jobs = (0..job.queries.len()).flat_map(|qi| (0..windows.len()).map(move |ci| (qi, ci)));
        let mut fetches = stream::iter(jobs)
            .map(|(qi, ci)| {
                let (client, failed, done) = (&client, &failed, &done);
                let window: Chunk = windows[ci];
                let path = spool_path(qi, ci);
                async move {
                    // A query that already failed is not worth more requests.
                    if failed[qi].load(Ordering::Relaxed) {
                        return (qi, ci, None);
                    }
                    let r = client
                        .fetch(&job.queries[qi].query, window, job.step_ms, &path, cancel)
                        .await;
                    if r.is_err() {
                        failed[qi].store(true, Ordering::Relaxed);
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    progress(format!("{n}/{total} requests"));
                    (qi, ci, Some(r))
                }
            })
            .buffer_unordered(job.concurrency.max(1));
        while let Some((qi, ci, r)) = fetches.next().await {
            match r {
                None => {}
                Some(Ok(parsed)) => results[qi][ci] = Some(parsed),
                Some(Err(FetchError::Cancelled)) => return Err(MetricsError::Cancelled),
                Some(Err(e)) => {
                    if job.on_error == OnQueryError::Fail {
                        let q = &job.queries[qi];
                        return Err(MetricsError::Query {
                            name: q.name.clone(),
                            query: q.query.clone(),
                            error: e,
                        });
                    }
                    errors[qi].get_or_insert(e);
                }
            }
        }
    }
    if cancel.is_cancelled() {
        return Err(MetricsError::Cancelled);
    }

    let mut reports = Vec::with_capacity(job.queries.len());
    let mut data = Vec::with_capacity(job.queries.len());
    for (qi, q) in job.queries.iter().enumerate() {
        let mut report = QueryReport {
            name: q.name.clone(),
            query: q.query.clone(),
            series: 0,
            samples: 0,
            status: QueryStatus::Ok,
            error: None,
            warnings: Vec::new(),
            file: None,
        };
        if let Some(e) = errors[qi].take() {
            report.status = QueryStatus::Error;
            report.error = Some(e.to_string());
            reports.push(report);
            data.push(None);
            continue;
        }
        let (merged, histograms) = merge(std::mem::take(&mut results[qi]), &mut report.warnings);
        report.series = merged.len() as u64;
        report.samples = merged
            .iter()
            .flat_map(|s| &s.parts)
            .map(|p| p.samples)
            .sum();
        if report.samples == 0 {
            report.status = QueryStatus::Empty;
            report.error = Some(if histograms > 0 {
                format!("{histograms} series hold only native histograms, which are not exported")
            } else if report.series > 0 {
                "series matched but no sample fell in the window".into()
            } else {
                "no series matched in the window".into()
            });
        }
        reports.push(report);
        data.push(Some(QueryData {
            name: q.name.clone(),
            series: merged,
            spools: (0..windows.len()).map(|ci| spool_path(qi, ci)).collect(),
        }));
    }

    let series_total: usize = data.iter().flatten().map(|d| d.series.len()).sum();
    let (output, split) = (job.output.clone(), job.split);
    let cancel_w = cancel.clone();
    let progress_fn = |n: usize| progress(format!("writing CSV: {n}/{series_total} series"));
    // Progress must be reported from the async side; the writer sends counts over a channel.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let mut writer = tokio::task::spawn_blocking(move || {
        let mut n = 0usize;
        let mut tick = || {
            n += 1;
            if n % 64 == 0 || n == series_total {
                let _ = tx.send(n);
            }
        };
        let mut outputs = Vec::new();
        if split {
            let present: Vec<&QueryData> = data.iter().flatten().collect();
            let names = file_names(present.iter().map(|d| d.name.as_str()));
            for (d, file_name) in present.into_iter().zip(names) {
                let path = split_path(&output, &file_name);
                let w = write_csv(&path, &[d], &cancel_w, &mut tick)
                    .map_err(io_err(format!("writing {}", path.display())))?;
                outputs.push((Some(d.name.clone()), path, w));
            }
        } else {
            let all: Vec<&QueryData> = data.iter().flatten().collect();
            let w = write_csv(&output, &all, &cancel_w, &mut tick)
                .map_err(io_err(format!("writing {}", output.display())))?;
            outputs.push((None, output.clone(), w));
        }
        Ok::<_, MetricsError>(outputs)
    });
    let outputs = loop {
        tokio::select! {
            Some(n) = rx.recv() => progress_fn(n),
            r = &mut writer => break r,
        }
    };
    let outputs = outputs
        .map_err(|e| MetricsError::Setup(format!("CSV writer: {e}")))?
        .map_err(|e| match e {
            MetricsError::Io { source, .. } if source.kind() == std::io::ErrorKind::Interrupted => {
                MetricsError::Cancelled
            }
            e => e,
        })?;
    drop(spool_dir);

    let mut report = MetricsReport {
        queries: reports,
        chunks_per_query: windows.len(),
        requests: done.load(Ordering::Relaxed),
        ..Default::default()
    };
    for (name, path, w) in outputs {
        report.rows += w.rows;
        report.bytes += w.bytes;
        report.digests.push((w.bytes, w.sha256));
        for q in &mut report.queries {
            if q.status != QueryStatus::Error && name.as_ref().is_none_or(|n| *n == q.name) {
                q.file = Some(path.clone());
            }
        }
        report.files.push(path);
    }
    Ok(report)
}

/// Stitches one query's chunk results: series keyed by labels (sorted), parts in chunk order.
/// Returns the series and how many series carried only native histograms.
fn merge(
    chunks: Vec<Option<parse::Parsed>>,
    warnings: &mut Vec<String>,
) -> (Vec<MergedSeries>, u64) {
    let mut by_labels: BTreeMap<Vec<(String, String)>, Vec<Part>> = BTreeMap::new();
    let mut histograms = 0;
    for (ci, parsed) in chunks.into_iter().enumerate() {
        let Some(parsed) = parsed else { continue };
        histograms += parsed.histogram_series;
        for w in parsed.warnings {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        for s in parsed.series {
            by_labels.entry(s.labels).or_default().push(Part {
                spool: ci,
                offset: s.offset,
                samples: s.samples,
            });
        }
    }
    let series = by_labels
        .into_iter()
        .map(|(labels, parts)| MergedSeries { labels, parts })
        .collect();
    (series, histograms)
}

/// A file-name part per query name (query texts hold `(`, `{`, `"`, spaces…): runs of other
/// characters than letters, digits, `_`, `-`, `.`, `:` become one `_`, at most 100 bytes, and a
/// clash gets `_2`, `_3`… in order.
pub fn file_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut used = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for name in names {
        let mut base = String::with_capacity(name.len());
        for c in name.chars() {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':') {
                base.push(c);
            } else if !base.ends_with('_') {
                base.push('_');
            }
        }
        let mut base = base.trim_matches('_').to_string();
        base.truncate(100);
        if base.is_empty() {
            base.push_str("query");
        }
        let mut candidate = base.clone();
        let mut n = 1;
        while !used.insert(candidate.clone()) {
            n += 1;
            candidate = format!("{base}_{n}");
        }
        out.push(candidate);
    }
    out
}

/// `<stem>_<query>.csv` beside the configured path.
pub fn split_path(output: &Path, query: &str) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "metrics".into());
    output.with_file_name(format!("{stem}_{query}.csv"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_texts_become_distinct_file_names() {
        assert_eq!(
            file_names([
                "up",
                "rate(node_cpu_seconds_total[5m])",
                "rate(node_cpu_seconds_total{mode=\"idle\"}[5m])",
                "rate(node_cpu_seconds_total[5m]) ",
                "{}",
            ]),
            [
                "up",
                "rate_node_cpu_seconds_total_5m",
                "rate_node_cpu_seconds_total_mode_idle_5m",
                "rate_node_cpu_seconds_total_5m_2",
                "query",
            ]
        );
    }
}
