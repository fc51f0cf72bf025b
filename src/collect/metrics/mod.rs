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
    let run = Collection {
        job,
        cancel,
        progress,
        windows: chunks(job.start_ms, job.end_ms, job.step_ms, MAX_POINTS),
        spool_dir: spool_dir_beside(&job.output)?,
    };
    let fetched = run.fetch_all(&client).await?;
    if cancel.is_cancelled() {
        return Err(MetricsError::Cancelled);
    }
    let (reports, data) = run.summarize(fetched.results, fetched.errors);
    let outputs = run.write_outputs(data).await?;
    let chunks_per_query = run.windows.len();
    drop(run);
    Ok(assemble_report(
        reports,
        chunks_per_query,
        fetched.requests,
        outputs,
    ))
}

/// A temporary folder beside the output (same disk, not a possibly memory-backed /tmp),
/// removed on drop; the output's folder is created first.
fn spool_dir_beside(output: &Path) -> Result<tempfile::TempDir, MetricsError> {
    let out_dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    std::fs::create_dir_all(&out_dir).map_err(io_err(format!("creating {}", out_dir.display())))?;
    tempfile::Builder::new()
        .prefix(".ttplan-metrics-spool-")
        .tempdir_in(&out_dir)
        .map_err(io_err(format!(
            "creating a spool folder in {}",
            out_dir.display()
        )))
}

/// What the phases of one [`collect`] share.
struct Collection<'a> {
    job: &'a MetricsJob,
    cancel: &'a CancellationToken,
    progress: &'a (dyn Fn(String) + Send + Sync),
    windows: Vec<Chunk>,
    spool_dir: tempfile::TempDir,
}

/// The fetch phase's results, indexed by query (and chunk).
struct Fetched {
    results: Vec<Vec<Option<parse::Parsed>>>,
    /// Each query's first error (only under [`OnQueryError::Record`]).
    errors: Vec<Option<FetchError>>,
    requests: usize,
}

/// One written CSV: the query it holds (all when `None`), its path and what was written.
struct OutputFile {
    query: Option<String>,
    path: PathBuf,
    written: csv_out::Written,
}

impl Collection<'_> {
    fn spool_path(&self, qi: usize, ci: usize) -> PathBuf {
        self.spool_dir.path().join(format!("q{qi}-c{ci}.spool"))
    }

    /// Fetches every chunk of every query into its spool file, `concurrency` at a time.
    async fn fetch_all(&self, client: &PromClient) -> Result<Fetched, MetricsError> {
        let (job, windows) = (self.job, &self.windows);
        let total = job.queries.len() * windows.len();
        let done = AtomicUsize::new(0);
        let failed: Vec<AtomicBool> = job.queries.iter().map(|_| AtomicBool::new(false)).collect();
        (self.progress)(format!("0/{total} requests"));
        let mut results: Vec<Vec<Option<parse::Parsed>>> = job
            .queries
            .iter()
            .map(|_| (0..windows.len()).map(|_| None).collect())
            .collect();
        let mut errors: Vec<Option<FetchError>> = job.queries.iter().map(|_| None).collect();
        // Collected: a lazy iterator of closures here trips the `Send` check of the caller's
        // async_trait future (rustc cannot prove the closures `Send` for every lifetime).
        let jobs: Vec<(usize, usize)> = (0..job.queries.len())
            .flat_map(|qi| (0..windows.len()).map(move |ci| (qi, ci)))
            .collect();
        let mut fetches = stream::iter(jobs)
            .map(|(qi, ci)| {
                let (failed, done) = (&failed, &done);
                let window: Chunk = windows[ci];
                let path = self.spool_path(qi, ci);
                async move {
                    // A query that already failed is not worth more requests.
                    if failed[qi].load(Ordering::Relaxed) {
                        return (qi, ci, None);
                    }
                    let r = client
                        .fetch(
                            &job.queries[qi].query,
                            window,
                            job.step_ms,
                            &path,
                            self.cancel,
                        )
                        .await;
                    if r.is_err() {
                        failed[qi].store(true, Ordering::Relaxed);
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    (self.progress)(format!("{n}/{total} requests"));
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
        drop(fetches);
        Ok(Fetched {
            results,
            errors,
            requests: done.load(Ordering::Relaxed),
        })
    }

    /// Each query's report, and its rows to write (`None` for a failed query).
    fn summarize(
        &self,
        results: Vec<Vec<Option<parse::Parsed>>>,
        errors: Vec<Option<FetchError>>,
    ) -> (Vec<QueryReport>, Vec<Option<QueryData>>) {
        results
            .into_iter()
            .zip(errors)
            .enumerate()
            .map(|(qi, (chunks, error))| self.summarize_query(qi, chunks, error))
            .unzip()
    }

    fn summarize_query(
        &self,
        qi: usize,
        chunks: Vec<Option<parse::Parsed>>,
        error: Option<FetchError>,
    ) -> (QueryReport, Option<QueryData>) {
        let q = &self.job.queries[qi];
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
        if let Some(e) = error {
            report.status = QueryStatus::Error;
            report.error = Some(e.to_string());
            return (report, None);
        }
        let (merged, histograms) = merge(chunks, &mut report.warnings);
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
        let data = QueryData {
            name: q.name.clone(),
            series: merged,
            spools: (0..self.windows.len())
                .map(|ci| self.spool_path(qi, ci))
                .collect(),
        };
        (report, Some(data))
    }

    /// Writes the CSV file(s) on a blocking thread, reporting progress every 64 series.
    async fn write_outputs(
        &self,
        data: Vec<Option<QueryData>>,
    ) -> Result<Vec<OutputFile>, MetricsError> {
        let series_total: usize = data.iter().flatten().map(|d| d.series.len()).sum();
        let (output, split) = (self.job.output.clone(), self.job.split);
        let cancel = self.cancel.clone();
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
            write_files(&output, split, &data, &cancel, &mut tick)
        });
        let outputs = loop {
            tokio::select! {
                Some(n) = rx.recv() => {
                    (self.progress)(format!("writing CSV: {n}/{series_total} series"));
                }
                r = &mut writer => break r,
            }
        };
        outputs
            .map_err(|e| MetricsError::Setup(format!("CSV writer: {e}")))?
            .map_err(|e| match e {
                MetricsError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::Interrupted =>
                {
                    MetricsError::Cancelled
                }
                e => e,
            })
    }
}

/// One CSV of every query, or with `split` one per query (`<stem>_<query>.csv`).
fn write_files(
    output: &Path,
    split: bool,
    data: &[Option<QueryData>],
    cancel: &CancellationToken,
    tick: &mut impl FnMut(),
) -> Result<Vec<OutputFile>, MetricsError> {
    let present: Vec<&QueryData> = data.iter().flatten().collect();
    if !split {
        let written = write_csv(output, &present, cancel, tick)
            .map_err(io_err(format!("writing {}", output.display())))?;
        return Ok(vec![OutputFile {
            query: None,
            path: output.to_path_buf(),
            written,
        }]);
    }
    let names = file_names(present.iter().map(|d| d.name.as_str()));
    let mut outputs = Vec::new();
    for (d, file_name) in present.into_iter().zip(names) {
        let path = split_path(output, &file_name);
        let written = write_csv(&path, &[d], cancel, &mut *tick)
            .map_err(io_err(format!("writing {}", path.display())))?;
        outputs.push(OutputFile {
            query: Some(d.name.clone()),
            path,
            written,
        });
    }
    Ok(outputs)
}

/// The totals over the written files; each query that produced data points at its file.
fn assemble_report(
    queries: Vec<QueryReport>,
    chunks_per_query: usize,
    requests: usize,
    outputs: Vec<OutputFile>,
) -> MetricsReport {
    let mut report = MetricsReport {
        queries,
        chunks_per_query,
        requests,
        ..Default::default()
    };
    for OutputFile {
        query,
        path,
        written,
    } in outputs
    {
        report.rows += written.rows;
        report.bytes += written.bytes;
        report.digests.push((written.bytes, written.sha256));
        for q in &mut report.queries {
            if q.status != QueryStatus::Error && query.as_ref().is_none_or(|n| *n == q.name) {
                q.file = Some(path.clone());
            }
        }
        report.files.push(path);
    }
    report
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
