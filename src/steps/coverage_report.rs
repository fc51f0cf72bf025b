//! `coverage-report`: merges the exec files of each service (the pods of one Deployment) and
//! renders `<out>/coverage_report/<EXP_NAME>/<service>/{coverage.xml, html/,
//! merged.exec, coverage-summary.txt, coverage-summary.json}` with JaCoCo's own report engine.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::api::command_env::resolve_workdir;
use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::atomic_write::{write_atomic, write_json_atomic};
use crate::coverage::collect::write_exec;
use crate::coverage::merge::{exec_files_by_service, merge_files, ServiceMap};
use crate::coverage::report::{
    extract_classes, missing_engine_parts, render_batch, report_counters, summary_json,
    summary_table, summary_txt, Counter, ReportEngine, ReportJob, REPORT_NAME,
};

/// Set by `ttplan run --sandbox` / `ttplan sandbox up` (the sandbox crate's `SANDBOX_VAR`):
/// there, a host without the report engine is a part the sandbox cannot simulate, not a
/// failed run.
const SANDBOX_VAR: &str = "TTPLAN_SANDBOX";

/// The step output (and manifest entry) of a sandbox run that could not render reports.
pub const NOT_SIMULATED: &str = "not simulated: needs a JVM, ant and JaCoCo's report jars";

/// Merges coverage per service and renders XML/HTML reports and summaries.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CoverageReportConfig {
    /// Folder of `<pod>__jacoco-<pod>.exec` files, relative to the output root.
    /// Default: `coverage_data/<exp_name>`.
    #[serde(default)]
    pub exec_dir: Option<PathBuf>,
    /// Report root, relative to the output root. Default: `coverage_report/<exp_name>`.
    /// (`out` is its deprecated name.)
    #[serde(default, rename = "output", alias = "out")]
    pub out: Option<PathBuf>,
    /// Classes and sources per service (the Deployment name). Paths are relative to the plan.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSources>,
    /// A Train-Ticket checkout: a service missing from `services` uses
    /// `<source_root>/<service>/target/*.jar` and `<source_root>/<service>/src/main/java`.
    #[serde(default)]
    pub source_root: Option<PathBuf>,
    /// Pod name → service, where stripping the ReplicaSet and pod hash suffixes is wrong.
    #[serde(default)]
    pub pod_services: BTreeMap<String, String>,
    /// A `jacococli.jar` to render with; default: Ant with Debian's `libjacoco-java`.
    #[serde(default)]
    pub jacococli: Option<PathBuf>,
    /// The `java` executable for `jacococli`.
    #[serde(default = "default_java")]
    pub java: PathBuf,
    /// The `ant` executable.
    #[serde(default = "default_ant")]
    pub ant: PathBuf,
    /// Folder with `org.jacoco.ant.jar`, `org.jacoco.core.jar`, … and ASM.
    #[serde(default = "default_lib_dir")]
    pub jacoco_lib_dir: PathBuf,
    /// Fail when a service with exec data has no classes configured (default: skip it and
    /// list it in the outputs).
    #[serde(default)]
    pub require_classes: bool,
    /// Report-engine runs at once (Ant: JVMs). The services are shared out between them.
    #[serde(default = "one")]
    pub concurrency: NonZeroUsize,
    /// At most this many services per report-engine run. Default: all of a run's share (one
    /// JVM start for all with `concurrency: 1`); `1` renders each service in a run of its own.
    #[serde(default)]
    pub services_per_run: Option<NonZeroUsize>,
}

/// Where one service's classes and sources are.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSources {
    /// The service's jar (a Spring Boot fat jar: classes come from `BOOT-INF/classes`).
    #[serde(default)]
    pub jar: Option<PathBuf>,
    /// A folder of class files (instead of `jar`).
    #[serde(default)]
    pub classes: Option<PathBuf>,
    /// Source folders (e.g. `src/main/java`) for the HTML source view.
    #[serde(default)]
    pub sources: Vec<PathBuf>,
}

fn default_java() -> PathBuf {
    "java".into()
}

fn default_ant() -> PathBuf {
    "ant".into()
}

fn default_lib_dir() -> PathBuf {
    "/usr/share/java".into()
}

const fn one() -> NonZeroUsize {
    NonZeroUsize::MIN
}

impl StepConfig for CoverageReportConfig {
    const KIND: &'static str = "coverage-report";
    const ABOUT: &'static str =
        "merges exec files per service and renders JaCoCo XML/HTML + coverage-summary.txt";
}

enum Classes {
    Jar(PathBuf),
    Dir(PathBuf),
}

impl CoverageReportConfig {
    fn engine(&self, plan_dir: &Path) -> ReportEngine {
        match &self.jacococli {
            Some(jar) => ReportEngine::JacocoCli {
                java: self.java.clone(),
                jar: resolve_workdir(plan_dir, Some(jar)),
            },
            None => ReportEngine::Ant {
                ant: self.ant.clone(),
                lib_dir: self.jacoco_lib_dir.clone(),
            },
        }
    }

    fn sources_of(&self, service: &str, plan_dir: &Path) -> Option<(Classes, Vec<PathBuf>)> {
        let abs = |p: &PathBuf| resolve_workdir(plan_dir, Some(p));
        if let Some(s) = self.services.get(service) {
            let classes = match (&s.jar, &s.classes) {
                (Some(j), _) => Classes::Jar(abs(j)),
                (None, Some(c)) => Classes::Dir(abs(c)),
                (None, None) => return None,
            };
            return Some((classes, s.sources.iter().map(abs).collect()));
        }
        let root = abs(self.source_root.as_ref()?).join(service);
        let jar = std::fs::read_dir(root.join("target"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jar"))
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                !name.ends_with("-sources.jar") && !name.ends_with("-javadoc.jar")
            })
            .min()?;
        let src = root.join("src/main/java");
        let sources = if src.is_dir() { vec![src] } else { Vec::new() };
        Some((Classes::Jar(jar), sources))
    }
}

#[async_trait::async_trait]
impl Step for CoverageReportConfig {
    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let exp = ctx.exp_name();
        let exec_dir = ctx.out_dir().join(
            self.exec_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("coverage_data").join(exp)),
        );
        let report_root = ctx.out_dir().join(
            self.out
                .clone()
                .unwrap_or_else(|| PathBuf::from("coverage_report").join(exp)),
        );
        let map = ServiceMap {
            overrides: self.pod_services.clone(),
        };
        let by_service = exec_files_by_service(&exec_dir, &map)?;
        if by_service.is_empty() {
            return Err(StepError::failed(format!(
                "no `<pod>__jacoco-<pod>.exec` files in {}",
                exec_dir.display()
            )));
        }
        let engine = self.engine(ctx.plan_dir());
        if let Some(outputs) = not_simulated(ctx, &engine, &exec_dir)? {
            return Ok(outputs);
        }
        let mut report = ReportRun {
            cfg: self,
            ctx,
            report_root,
            out: StepOutputs::default(),
            rows: Vec::new(),
            unconfigured: Vec::new(),
            failed: Vec::new(),
        };
        let pending = report.prepare_services(&by_service).await?;
        let rendered = report.render(&engine, &pending).await?;
        report.publish_all(pending, rendered).await;
        report.finish()
    }
}

/// One `coverage-report` run: prepare every service (merge, classes), render the reports,
/// publish them, then write the summary and the outputs.
struct ReportRun<'a> {
    cfg: &'a CoverageReportConfig,
    ctx: &'a StepCtx,
    report_root: PathBuf,
    out: StepOutputs,
    /// Published services and their line counter.
    rows: Vec<(String, Option<Counter>)>,
    /// Services with exec data but no classes configured.
    unconfigured: Vec<String>,
    /// A service that fails (its merge, its classes, its report) is reported by name at the
    /// end; the others still get their reports. (service, why)
    failed: Vec<(String, String)>,
}

impl ReportRun<'_> {
    /// Merges each service's exec files and finds its classes, in service order.
    async fn prepare_services(
        &mut self,
        by_service: &BTreeMap<String, Vec<PathBuf>>,
    ) -> Result<Vec<Pending>, StepError> {
        let ctx = self.ctx;
        let mut pending: Vec<Pending> = Vec::new();
        let total = by_service.len();
        for (n, (service, files)) in by_service.iter().enumerate() {
            if ctx.cancel_token().is_cancelled() {
                return Err(StepError::Cancelled);
            }
            let Some((classes, sources)) = self.cfg.sources_of(service, ctx.plan_dir()) else {
                if self.cfg.require_classes {
                    return Err(StepError::failed(format!(
                        "service `{service}` has coverage data but no classes: add it under \
                         `services:` (jar or classes) or set `source_root:`"
                    )));
                }
                self.unconfigured.push(service.clone());
                continue;
            };
            ctx.progress(format!(
                "[{}/{total}] {service}: merging {} exec files",
                n + 1,
                files.len()
            ));
            let dir = self.report_root.join(service);
            let (files_owned, dir_owned) = (files.clone(), dir.clone());
            let prepared = tokio::select! {
                r = blocking(move || prepare(&files_owned, classes, &dir_owned)) => r,
                () = ctx.cancel_token().cancelled() => return Err(StepError::Cancelled),
            };
            match prepared {
                Ok(prepared) => pending.push(Pending {
                    service: service.clone(),
                    dir,
                    sources,
                    prepared,
                }),
                Err(e) => self.failed.push((service.clone(), e.to_string())),
            }
        }
        Ok(pending)
    }

    /// Renders the pending reports in the configured engine runs; one result per service.
    async fn render(
        &self,
        engine: &ReportEngine,
        pending: &[Pending],
    ) -> Result<Vec<Result<(), String>>, StepError> {
        let ctx = self.ctx;
        let concurrency = self.cfg.concurrency.get();
        let runs = runs(
            pending.len(),
            concurrency,
            self.cfg.services_per_run.map(NonZeroUsize::get),
        );
        if !pending.is_empty() {
            ctx.progress(format!(
                "rendering {} reports in {} report-engine run(s), {} at once",
                pending.len(),
                runs.len(),
                concurrency.min(runs.len())
            ));
        }
        tokio::select! {
            r = render_runs(engine, pending, &runs, concurrency, &self.report_root, ctx) => Ok(r),
            () = ctx.cancel_token().cancelled() => Err(StepError::Cancelled),
        }
    }

    /// Moves each rendered report into place and records its artifacts and line counter.
    async fn publish_all(&mut self, pending: Vec<Pending>, rendered: Vec<Result<(), String>>) {
        for (p, result) in pending.into_iter().zip(rendered) {
            let Pending {
                service,
                dir,
                prepared,
                ..
            } = p;
            if let Err(e) = result {
                self.failed.push((service, e));
                continue;
            }
            let (svc, dir_owned) = (service.clone(), dir.clone());
            let published = blocking(move || {
                let counters = publish(&svc, &dir_owned, &prepared.xml(), &prepared.html())?;
                // The scratch folder (extracted classes) goes once the results are out.
                drop(prepared);
                Ok(counters)
            })
            .await;
            match published {
                Ok(counters) => {
                    for f in [
                        "merged.exec",
                        "coverage.xml",
                        "coverage-summary.txt",
                        "coverage-summary.json",
                    ] {
                        self.out.artifacts.push(dir.join(f));
                    }
                    self.rows.push((service, counters.get("LINE").copied()));
                }
                Err(e) => self.failed.push((service.clone(), e.to_string())),
            }
        }
    }

    /// Writes the summary of all services and decides the step's result.
    fn finish(mut self) -> Result<StepOutputs, StepError> {
        if !self.rows.is_empty() {
            // Not `coverage-summary.txt`: that name is the per-service text loaders look for.
            let all = self.report_root.join("coverage-summary.tsv");
            write_atomic(&all, summary_table(&self.rows).as_bytes())
                .map_err(StepError::io(format!("writing {}", all.display())))?;
            self.out.artifacts.push(all);
        }
        if !self.failed.is_empty() {
            return Err(StepError::failed(failure_text(&self.failed)));
        }
        if self.rows.is_empty() {
            return Err(StepError::failed(format!(
                "no service could be reported: none of {} has classes configured \
                 (`services:` or `source_root:`)",
                self.unconfigured.join(", ")
            )));
        }
        Ok(self
            .out
            .value("dir", self.report_root.display().to_string())
            .value(
                "services",
                self.rows.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(),
            )
            .value("unconfigured", self.unconfigured))
    }
}

/// In a sandbox run on a host without the report engine: says so (progress, step log,
/// outputs) and renders nothing, so the run goes on; the exec files stay in `exec_dir`.
fn not_simulated(
    ctx: &StepCtx,
    engine: &ReportEngine,
    exec_dir: &Path,
) -> Result<Option<StepOutputs>, StepError> {
    if std::env::var_os(SANDBOX_VAR).is_none() {
        return Ok(None);
    }
    let missing = missing_engine_parts(engine);
    if missing.is_empty() {
        return Ok(None);
    }
    let text = format!(
        "{NOT_SIMULATED} (missing: {}; `bash scripts/deps/coverage.sh` installs them); \
         the agents' exec files are in {}",
        missing.join(", "),
        exec_dir.display()
    );
    ctx.progress(text.clone());
    ctx.append_log(&format!("{text}\n"))?;
    Ok(Some(
        StepOutputs::default()
            .value("not_simulated", text)
            .value("missing", missing)
            .value("services", Vec::<String>::new()),
    ))
}

/// The step's error for the services that failed (service, why): one line per distinct
/// reason, naming its services (an engine that cannot start fails them all alike).
fn failure_text(failed: &[(String, String)]) -> String {
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for (service, why) in failed {
        match reasons.iter_mut().find(|(w, _)| *w == why.as_str()) {
            Some((_, services)) => services.push(service),
            None => reasons.push((why, vec![service])),
        }
    }
    let mut text = match failed.len() {
        1 => String::new(),
        n => format!("{n} services failed (the others' reports are written):\n"),
    };
    let lines: Vec<String> = reasons
        .iter()
        .map(|(why, services)| {
            let names: Vec<String> = services.iter().map(|s| format!("`{s}`")).collect();
            let noun = if services.len() == 1 {
                "service"
            } else {
                "services"
            };
            format!("{noun} {}: {why}", names.join(", "))
        })
        .collect();
    text.push_str(&lines.join("\n"));
    text
}

/// A service merged and with its classes, waiting for its report.
struct Pending {
    service: String,
    dir: PathBuf,
    sources: Vec<PathBuf>,
    prepared: Prepared,
}

/// The services (by index) of each report-engine run: `concurrency` runs share them out
/// evenly unless `per_run` caps a run's size (then there are more runs, `concurrency` at once).
fn runs(n: usize, concurrency: usize, per_run: Option<usize>) -> Vec<Range<usize>> {
    if n == 0 {
        return Vec::new();
    }
    let size = per_run
        .unwrap_or_else(|| n.div_ceil(concurrency.max(1)))
        .max(1);
    (0..n)
        .step_by(size)
        .map(|start| start..(start + size).min(n))
        .collect()
}

/// The services of one engine run and their results (an error's text per failed service).
type RunResults = (Range<usize>, Vec<Result<(), String>>);

/// Renders every pending report into its scratch folder, `concurrency` engine runs at once;
/// one result per pending service, in order. The results are moved into place afterwards
/// ([`publish`]), so a killed run never leaves a half-rendered report under the final names.
async fn render_runs(
    engine: &ReportEngine,
    pending: &[Pending],
    runs: &[Range<usize>],
    concurrency: usize,
    report_root: &Path,
    ctx: &StepCtx,
) -> Vec<Result<(), String>> {
    use futures_util::StreamExt;
    let one_run = |range: Range<usize>| async move {
        let group = &pending[range.clone()];
        let outcome = render_one_run(engine, group, report_root, ctx).await;
        let n = range.len();
        match outcome {
            Ok(results) => (
                range,
                results
                    .into_iter()
                    .map(|r| r.map_err(|e| e.to_string()))
                    .collect(),
            ),
            Err(e) => (range, vec![Err(e.to_string()); n]),
        }
    };
    let mut done: Vec<RunResults> = futures_util::stream::iter(runs.iter().cloned())
        .map(one_run)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    done.sort_by_key(|(r, _)| r.start);
    done.into_iter().flat_map(|(_, r)| r).collect()
}

async fn render_one_run(
    engine: &ReportEngine,
    group: &[Pending],
    report_root: &Path,
    ctx: &StepCtx,
) -> Result<Vec<Result<(), crate::coverage::CoverageError>>, StepError> {
    let work = tempfile::Builder::new()
        .prefix(".render.")
        .tempdir_in(report_root)
        .map_err(StepError::io(format!(
            "creating a scratch folder in {}",
            report_root.display()
        )))?;
    let (xmls, htmls): (Vec<PathBuf>, Vec<PathBuf>) = group
        .iter()
        .map(|p| (p.prepared.xml(), p.prepared.html()))
        .unzip();
    let jobs: Vec<ReportJob<'_>> = group
        .iter()
        .enumerate()
        .map(|(i, p)| ReportJob {
            // The published XML files carry JaCoCo CLI's default name, not the service's.
            name: REPORT_NAME,
            exec_files: std::slice::from_ref(&p.prepared.merged),
            classes_dir: &p.prepared.classes_dir,
            source_dirs: &p.sources,
            xml: &xmls[i],
            html_dir: &htmls[i],
        })
        .collect();
    let results = render_batch(engine, &jobs, work.path(), ctx.child_groups()).await?;
    let first = group.first().map_or("", |p| p.service.as_str());
    ctx.progress(format!(
        "rendered {} report(s) from {first}: {} failed",
        group.len(),
        results.iter().filter(|r| r.is_err()).count()
    ));
    Ok(results)
}

/// A service's merged exec file and classes; its report renders into `scratch`.
struct Prepared {
    scratch: tempfile::TempDir,
    merged: PathBuf,
    classes_dir: PathBuf,
}

impl Prepared {
    fn xml(&self) -> PathBuf {
        self.scratch.path().join("coverage.xml")
    }

    fn html(&self) -> PathBuf {
        self.scratch.path().join("html")
    }
}

fn prepare(files: &[PathBuf], classes: Classes, dir: &Path) -> Result<Prepared, StepError> {
    std::fs::create_dir_all(dir).map_err(StepError::io(format!("creating {}", dir.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(".render.")
        .tempdir_in(dir)
        .map_err(StepError::io(format!(
            "creating a scratch folder in {}",
            dir.display()
        )))?;
    let merged = dir.join("merged.exec");
    write_exec(&merged, &merge_files(files)?)?;
    let classes_dir = match classes {
        Classes::Dir(d) => d,
        Classes::Jar(jar) => {
            let d = scratch.path().join("classes");
            extract_classes(&jar, &d)?;
            d
        }
    };
    Ok(Prepared {
        scratch,
        merged,
        classes_dir,
    })
}

fn publish(
    service: &str,
    dir: &Path,
    xml_tmp: &Path,
    html_tmp: &Path,
) -> Result<BTreeMap<String, Counter>, StepError> {
    let xml_text = std::fs::read_to_string(xml_tmp)
        .map_err(StepError::io(format!("reading {}", xml_tmp.display())))?;
    let counters = report_counters(&xml_text)?;
    let html = dir.join("html");
    if html.exists() {
        std::fs::remove_dir_all(&html)
            .map_err(StepError::io(format!("removing old {}", html.display())))?;
    }
    std::fs::rename(html_tmp, &html)
        .map_err(StepError::io(format!("moving {}", html.display())))?;
    let xml = dir.join("coverage.xml");
    std::fs::rename(xml_tmp, &xml).map_err(StepError::io(format!("moving {}", xml.display())))?;
    let txt = dir.join("coverage-summary.txt");
    write_atomic(
        &txt,
        summary_txt(service, counters.get("LINE").copied()).as_bytes(),
    )
    .map_err(StepError::io(format!("writing {}", txt.display())))?;
    let json = dir.join("coverage-summary.json");
    write_json_atomic(&json, &summary_json(service, &counters))
        .map_err(StepError::io(format!("writing {}", json.display())))?;
    Ok(counters)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StepError::failed(format!("file work ended abnormally: {e}")))?
}

#[cfg(test)]
mod tests {
    #[test]
    fn services_are_shared_out_between_the_engine_runs() {
        use super::runs;
        use std::ops::Range;
        // All in one run by default; `concurrency` runs share them evenly.
        assert_eq!(runs(41, 1, None), vec![Range { start: 0, end: 41 }]);
        assert_eq!(runs(41, 2, None), [0..21, 21..41]);
        assert_eq!(runs(5, 8, None), [0..1, 1..2, 2..3, 3..4, 4..5]);
        // `services_per_run` caps a run: 1 is one run per service.
        assert_eq!(runs(3, 1, Some(1)), [0..1, 1..2, 2..3]);
        assert_eq!(runs(5, 2, Some(2)), [0..2, 2..4, 4..5]);
        assert!(runs(0, 1, None).is_empty());
    }

    #[test]
    fn failures_are_named_once_per_reason() {
        let f = |s: &str, w: &str| (s.to_string(), w.to_string());
        assert_eq!(super::failure_text(&[f("a", "boom")]), "service `a`: boom");
        assert_eq!(
            super::failure_text(&[f("a", "no ant"), f("b", "bad class"), f("c", "no ant")]),
            "3 services failed (the others' reports are written):\n\
             services `a`, `c`: no ant\nservice `b`: bad class"
        );
    }

    #[test]
    fn the_sandbox_marker_is_the_sandbox_crates() {
        assert_eq!(super::SANDBOX_VAR, ttplan_sandbox::environment::SANDBOX_VAR);
    }
}
