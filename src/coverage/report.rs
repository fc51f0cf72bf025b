//! Coverage reports: class files from a service's jar, rendering through JaCoCo's own report
//! engine (a user's `jacococli.jar`, or Debian's `libjacoco-java` through Ant's `jacoco:report`),
//! and the summaries read back from JaCoCo's XML.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use serde::Serialize;

use super::CoverageError;
use crate::child::{self, ChildGroups};

/// Jars Ant needs for `jacoco:*` tasks, as Debian's `libjacoco-java` and `libasm-java` name them.
pub const ANT_JARS: &[&str] = &[
    "org.jacoco.ant.jar",
    "org.jacoco.core.jar",
    "org.jacoco.report.jar",
    "org.jacoco.agent.jar",
    "asm.jar",
    "asm-commons.jar",
    "asm-tree.jar",
];

/// Which JaCoCo report engine renders XML and HTML.
#[derive(Debug, Clone)]
pub enum ReportEngine {
    /// `java -jar jacococli.jar report …`
    JacocoCli { java: PathBuf, jar: PathBuf },
    /// `ant -f build.xml` with `jacoco:report`; jars from `lib_dir` (Debian: `/usr/share/java`).
    Ant { ant: PathBuf, lib_dir: PathBuf },
}

/// One service's report.
#[derive(Debug, Clone)]
pub struct ReportJob<'a> {
    /// Report title (the service).
    pub name: &'a str,
    pub exec_files: &'a [PathBuf],
    pub classes_dir: &'a Path,
    pub source_dirs: &'a [PathBuf],
    pub xml: &'a Path,
    pub html_dir: &'a Path,
}

/// The classpath for Ant's JaCoCo tasks.
///
/// # Errors
/// When a jar is missing; the message names them and the package that provides them.
pub fn ant_classpath(lib_dir: &Path) -> Result<Vec<PathBuf>, CoverageError> {
    let jars: Vec<PathBuf> = ANT_JARS.iter().map(|j| lib_dir.join(j)).collect();
    let missing: Vec<String> = jars
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        Ok(jars)
    } else {
        Err(CoverageError::Report(format!(
            "JaCoCo's Ant tasks are not installed: missing {} (Debian: `apt-get install ant \
             libjacoco-java`, or configure `jacococli:`)",
            missing.join(", ")
        )))
    }
}

/// What the report engine needs that this host lacks (empty when it can render): the
/// programs (`ant`, `java`) and JaCoCo's jars. Checked without running anything.
pub fn missing_engine_parts(engine: &ReportEngine) -> Vec<String> {
    let mut missing = Vec::new();
    let mut need_program = |p: &Path| {
        if !program_exists(p) {
            missing.push(format!("`{}`", p.display()));
        }
    };
    match engine {
        ReportEngine::JacocoCli { java, jar } => {
            need_program(java);
            if !jar.is_file() {
                missing.push(jar.display().to_string());
            }
        }
        ReportEngine::Ant { ant, lib_dir } => {
            need_program(ant);
            // Ant's launcher runs on a JVM.
            need_program(Path::new("java"));
            missing.extend(
                ANT_JARS
                    .iter()
                    .map(|j| lib_dir.join(j))
                    .filter(|p| !p.is_file())
                    .map(|p| p.display().to_string()),
            );
        }
    }
    missing
}

/// A program given by path exists, or a bare name is found on `PATH`.
fn program_exists(p: &Path) -> bool {
    if p.components().count() > 1 {
        return p.is_file();
    }
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| !d.as_os_str().is_empty() && d.join(p).is_file())
    })
}

fn xml_attr(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

fn path_attr(p: &Path) -> String {
    xml_attr(&p.display().to_string())
}

/// An Ant build file defining the JaCoCo tasks; `body` is the `report` target's content.
pub fn ant_build_xml(classpath: &[PathBuf], body: &str) -> String {
    ant_build_xml_targets(classpath, &[("report".to_string(), body.to_string())])
}

/// An Ant build file defining the JaCoCo tasks with one target per `(name, body)`; the first
/// is the default.
fn ant_build_xml_targets(classpath: &[PathBuf], targets: &[(String, String)]) -> String {
    let default = targets.first().map_or("report", |(n, _)| n.as_str());
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <project name=\"ttplan-coverage\" default=\"{}\" xmlns:jacoco=\"antlib:org.jacoco.ant\">\n\
         \x20 <taskdef uri=\"antlib:org.jacoco.ant\" resource=\"org/jacoco/ant/antlib.xml\">\n\
         \x20   <classpath>\n",
        xml_attr(default)
    );
    for j in classpath {
        s.push_str(&format!(
            "      <pathelement location=\"{}\"/>\n",
            path_attr(j)
        ));
    }
    s.push_str("    </classpath>\n  </taskdef>\n");
    for (name, body) in targets {
        s.push_str(&format!("  <target name=\"{}\">\n", xml_attr(name)));
        s.push_str(body);
        s.push_str("  </target>\n");
    }
    s.push_str("</project>\n");
    s
}

fn ant_report_body(job: &ReportJob<'_>) -> String {
    let mut s = String::from("    <jacoco:report>\n      <executiondata>\n");
    for f in job.exec_files {
        s.push_str(&format!("        <file file=\"{}\"/>\n", path_attr(f)));
    }
    s.push_str("      </executiondata>\n");
    s.push_str(&format!(
        "      <structure name=\"{}\">\n        <classfiles><fileset dir=\"{}\"/></classfiles>\n",
        xml_attr(job.name),
        path_attr(job.classes_dir)
    ));
    if !job.source_dirs.is_empty() {
        s.push_str("        <sourcefiles encoding=\"UTF-8\">\n");
        for d in job.source_dirs {
            s.push_str(&format!("          <fileset dir=\"{}\"/>\n", path_attr(d)));
        }
        s.push_str("        </sourcefiles>\n");
    }
    s.push_str("      </structure>\n");
    s.push_str(&format!(
        "      <html destdir=\"{}\"/>\n      <xml destfile=\"{}\"/>\n    </jacoco:report>\n",
        path_attr(job.html_dir),
        path_attr(job.xml)
    ));
    s
}

/// Renders `job` with `engine`; `work` is a scratch folder (Ant's build file goes there).
///
/// # Errors
/// When the engine is missing or fails; the message holds the tail of its output.
pub async fn render(
    engine: &ReportEngine,
    job: &ReportJob<'_>,
    work: &Path,
    groups: &ChildGroups,
) -> Result<(), CoverageError> {
    match engine {
        ReportEngine::JacocoCli { java, jar } => render_cli(java, jar, job, groups).await,
        ReportEngine::Ant { ant, lib_dir } => {
            let mut results =
                render_ant_batch(ant, lib_dir, std::slice::from_ref(job), work, groups).await?;
            results.pop().unwrap_or_else(|| {
                Err(CoverageError::Report(
                    "ant jacoco:report gave no result".into(),
                ))
            })
        }
    }
}

async fn render_cli(
    java: &Path,
    jar: &Path,
    job: &ReportJob<'_>,
    groups: &ChildGroups,
) -> Result<(), CoverageError> {
    let mut c = tokio::process::Command::new(java);
    c.arg("-jar").arg(jar).arg("report");
    c.args(job.exec_files);
    c.arg("--classfiles").arg(job.classes_dir);
    for d in job.source_dirs {
        c.arg("--sourcefiles").arg(d);
    }
    c.args(["--encoding", "UTF-8", "--name", job.name]);
    c.arg("--xml").arg(job.xml).arg("--html").arg(job.html_dir);
    run_tool(&mut c, CLI, groups).await
}

/// Renders `jobs` with as few engine runs as the engine allows: Ant renders all of them in
/// one JVM (a JVM start costs about a second; a small report a fraction of that), `jacococli`
/// one job per run. `work` is a scratch folder of this batch alone. One result per job, in
/// order: a report that fails inside the batch does not stop the others.
///
/// # Errors
/// The outer error when the engine failed as a whole (cannot start, build file rejected),
/// so no job could run.
pub async fn render_batch(
    engine: &ReportEngine,
    jobs: &[ReportJob<'_>],
    work: &Path,
    groups: &ChildGroups,
) -> Result<Vec<Result<(), CoverageError>>, CoverageError> {
    match engine {
        ReportEngine::JacocoCli { java, jar } => {
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(render_cli(java, jar, job, groups).await);
            }
            Ok(out)
        }
        ReportEngine::Ant { ant, lib_dir } => {
            render_ant_batch(ant, lib_dir, jobs, work, groups).await
        }
    }
}

/// One target per job, run with `-keep-going`: Ant then goes on with the targets after a
/// failed one (they do not depend on it) and logs "Target 'X' failed with message 'M'." for
/// each failure. A job succeeded when its target reached the marker file after its
/// `jacoco:report`.
async fn render_ant_batch(
    ant: &Path,
    lib_dir: &Path,
    jobs: &[ReportJob<'_>],
    work: &Path,
    groups: &ChildGroups,
) -> Result<Vec<Result<(), CoverageError>>, CoverageError> {
    let what = ANT;
    let cp = ant_classpath(lib_dir)?;
    let names: Vec<String> = (0..jobs.len()).map(|i| format!("report-{i}")).collect();
    let done = |i: usize| work.join(format!("report-{i}.done"));
    let targets: Vec<(String, String)> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let body = format!(
                "{}    <touch file=\"{}\"/>\n",
                ant_report_body(job),
                path_attr(&done(i))
            );
            (names[i].clone(), body)
        })
        .collect();
    let build = work.join("build.xml");
    std::fs::write(&build, ant_build_xml_targets(&cp, &targets))
        .map_err(CoverageError::io(format!("writing {}", build.display())))?;
    let mut cmd = tokio::process::Command::new(ant);
    cmd.arg("-noinput")
        .arg("-keep-going")
        .arg("-f")
        .arg(&build)
        .args(&names);
    let out = child::output(&mut cmd, groups).await.map_err(|e| {
        CoverageError::Report(format!("cannot start {what} ({}): {e}", ant.display()))
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ran: Vec<bool> = names
        .iter()
        .map(|n| stdout.lines().any(|l| l == format!("{n}:")))
        .collect();
    if !out.status.success() && !ran.iter().any(|r| *r) {
        // Nothing ran: the build file or the task definitions failed.
        return Err(CoverageError::Report(format!(
            "{what} failed ({}):\n  | {}",
            out.status,
            tail(&format!("{stdout}{stderr}"), 15).join("\n  | ")
        )));
    }
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if done(i).is_file() {
                return Ok(());
            }
            let mut lines = target_section(&stdout, name, &names);
            lines.extend(target_failure(&stderr, name));
            if lines.is_empty() {
                lines = tail(&format!("{stdout}{stderr}"), 15);
            }
            let lines = tail(&lines.join("\n"), 15);
            Err(CoverageError::Report(format!(
                "{what} failed ({}):\n  | {}",
                out.status,
                lines.join("\n  | ")
            )))
        })
        .collect())
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_string())
        .collect()
}

/// What Ant printed under the target's header (`name:`) up to the next target's or the
/// build's end, blank lines left out.
fn target_section(stdout: &str, name: &str, names: &[String]) -> Vec<String> {
    let header = format!("{name}:");
    stdout
        .lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| {
            !l.starts_with("BUILD ")
                && !l
                    .strip_suffix(':')
                    .is_some_and(|n| names.iter().any(|x| x == n))
        })
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Ant's `-keep-going` message for a failed target (`Target 'X' failed with message 'M'.`,
/// M possibly over several lines), as `M`.
fn target_failure(stderr: &str, name: &str) -> Vec<String> {
    let start = format!("Target '{name}' failed with message '");
    let mut lines = stderr.lines().skip_while(|l| !l.starts_with(&start));
    let Some(first) = lines.next() else {
        return Vec::new();
    };
    let mut msg = vec![first[start.len()..].to_string()];
    msg.extend(
        lines
            .take_while(|l| !l.starts_with("Target '") && !l.starts_with("BUILD "))
            .map(str::to_string),
    );
    while msg.last().is_some_and(|l| l.trim().is_empty()) {
        msg.pop();
    }
    if let Some(last) = msg.last_mut() {
        if let Some(m) = last.strip_suffix("'.") {
            *last = m.to_string();
        }
    }
    msg
}

const CLI: &str = "jacococli report";
const ANT: &str = "ant jacoco:report";

/// Runs a tool to completion in the run's child registry (its group is killed if the future is
/// dropped, e.g. on cancellation, or by an abort).
///
/// # Errors
/// When it cannot start or exits non-zero.
pub async fn run_tool(
    cmd: &mut tokio::process::Command,
    what: &str,
    groups: &ChildGroups,
) -> Result<(), CoverageError> {
    let out = child::output(cmd, groups).await.map_err(|e| {
        CoverageError::Report(format!(
            "cannot start {what} ({:?}): {e}",
            cmd.as_std().get_program()
        ))
    })?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(CoverageError::Report(format!(
        "{what} failed ({}):\n  | {}",
        out.status,
        tail.join("\n  | ")
    )))
}

/// Extracts a jar's class files into `dest`: a Spring Boot fat jar's `BOOT-INF/classes` (its
/// own code, not the libraries in `BOOT-INF/lib`), else every class of a plain jar. Returns
/// how many classes were written.
///
/// # Errors
/// When the jar cannot be read or holds no classes.
pub fn extract_classes(jar: &Path, dest: &Path) -> Result<usize, CoverageError> {
    let ctx = || format!("reading {}", jar.display());
    let file = std::fs::File::open(jar).map_err(CoverageError::io(ctx()))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| CoverageError::Report(format!("{}: not a jar: {e}", jar.display())))?;
    let boot = (0..zip.len()).any(|i| {
        zip.name_for_index(i)
            .is_some_and(|n| n.starts_with("BOOT-INF/classes/"))
    });
    let prefix = if boot { "BOOT-INF/classes/" } else { "" };
    let mut n = 0;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| CoverageError::Report(format!("{}: entry {i}: {e}", jar.display())))?;
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        let Ok(rel) = name.strip_prefix(prefix) else {
            continue;
        };
        if entry.is_dir() || rel.extension().is_none_or(|e| e != "class") {
            continue;
        }
        let out = dest.join(rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)
                .map_err(CoverageError::io(format!("creating {}", parent.display())))?;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(CoverageError::io(format!("{}: {}", ctx(), name.display())))?;
        std::fs::write(&out, bytes)
            .map_err(CoverageError::io(format!("writing {}", out.display())))?;
        n += 1;
    }
    if n == 0 {
        return Err(CoverageError::Report(format!(
            "{} holds no class files{}",
            jar.display(),
            if boot { " under BOOT-INF/classes" } else { "" }
        )));
    }
    Ok(n)
}

/// One counter of a JaCoCo report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counter {
    pub missed: u64,
    pub covered: u64,
}

impl Counter {
    pub fn total(self) -> u64 {
        self.missed + self.covered
    }
}

/// The report-level counters of a JaCoCo XML report (INSTRUCTION, BRANCH, LINE, COMPLEXITY,
/// METHOD, CLASS — each present only when its total is above zero).
///
/// # Errors
/// When the XML does not parse or has no `<report>` element.
pub fn report_counters(xml: &str) -> Result<BTreeMap<String, Counter>, CoverageError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let bad = |e: String| CoverageError::Report(format!("invalid JaCoCo XML report: {e}"));
    let mut depth = 0usize;
    let mut seen_report = false;
    let mut out = BTreeMap::new();
    loop {
        let ev = reader.read_event().map_err(|e| bad(e.to_string()))?;
        let (start, empty) = match &ev {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let Some(e) = start else { continue };
        if depth == 0 && e.name().as_ref() == b"report" {
            seen_report = true;
        }
        // Only the report's own counters (depth 1): deeper ones are per package/class/method.
        if depth == 1 && seen_report && e.name().as_ref() == b"counter" {
            let mut kind = None;
            let mut missed = None;
            let mut covered = None;
            for a in e.attributes() {
                let a = a.map_err(|e| bad(e.to_string()))?;
                // Counter attributes are names and numbers: nothing to unescape.
                let v = std::str::from_utf8(&a.value).map_err(|e| bad(e.to_string()))?;
                match a.key.as_ref() {
                    b"type" => kind = Some(v.to_string()),
                    b"missed" => missed = v.parse::<u64>().ok(),
                    b"covered" => covered = v.parse::<u64>().ok(),
                    _ => {}
                }
            }
            match (kind, missed, covered) {
                (Some(k), Some(missed), Some(covered)) => {
                    out.insert(k, Counter { missed, covered });
                }
                _ => return Err(bad("a <counter> lacks type, missed or covered".into())),
            }
        }
        if !empty {
            depth += 1;
        }
    }
    if !seen_report {
        return Err(bad("no <report> element".into()));
    }
    Ok(out)
}

/// `100 × covered / total` rounded half to even, as the dataset's script computes it
/// (`round(100 * covered / lines)`: an exact product, one correctly rounded division, Python's
/// banker's rounding: 74.5 → 74, 82.5 → 82). Integer arithmetic gives the same result: a true
/// half is exact in both, and no other quotient of such integers lies close enough to a half
/// for a float division to land on one.
pub fn percent_half_even(covered: u64, total: u64) -> Option<i64> {
    if total == 0 {
        return None;
    }
    let scaled = u128::from(covered) * 100;
    let total = u128::from(total);
    let (q, r) = (scaled / total, scaled % total);
    let up = match (2 * r).cmp(&total) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => q % 2 == 1,
        std::cmp::Ordering::Less => false,
    };
    Some((q + u128::from(up)) as i64)
}

pub fn round_half_even(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// The report name JaCoCo's CLI gives without `--name`, which the published `coverage.xml`
/// files carry.
pub const REPORT_NAME: &str = "JaCoCo Coverage Report";

/// A service's `coverage-summary.txt`, byte for byte the published dataset's "Simple Code
/// Coverage Report": lines = missed + covered of the report-level LINE counter, the percentage
/// rounded half to even ([`percent_half_even`]), 0 without lines (or without a LINE counter).
pub fn summary_txt(service: &str, line: Option<Counter>) -> String {
    let lines = line.map_or(0, Counter::total);
    let percent = line
        .and_then(|c| percent_half_even(c.covered, c.total()))
        .unwrap_or(0);
    let rule = |c: char| c.to_string().repeat(66);
    format!(
        "{}\n  Simple Code Coverage Report\n{}\nService: {service}\n{}\n{:<20}Lines {lines:>6}  Cover {percent:>3}%\n{}\n",
        rule('='),
        rule('-'),
        rule('-'),
        "TOTAL",
        rule('-'),
    )
}

/// `coverage-summary.tsv` beside the service folders: a header, then `service, total lines,
/// line coverage %` per row, tab-separated. A service without lines shows `n/a`.
pub fn summary_table(rows: &[(String, Option<Counter>)]) -> String {
    let mut s = String::from("service\ttotal_lines\tline_coverage\n");
    for (service, line) in rows {
        match line.and_then(|c| percent_half_even(c.covered, c.total()).map(|p| (c, p))) {
            Some((c, p)) => s.push_str(&format!("{service}\t{}\t{p}%\n", c.total())),
            None => s.push_str(&format!("{service}\t0\tn/a\n")),
        }
    }
    s
}

/// `coverage-summary.json`: every counter of the report with totals and percentages.
pub fn summary_json(service: &str, counters: &BTreeMap<String, Counter>) -> serde_json::Value {
    let mut c = serde_json::Map::new();
    for (k, v) in counters {
        c.insert(
            k.clone(),
            serde_json::json!({
                "missed": v.missed,
                "covered": v.covered,
                "total": v.total(),
                "percent": percent_half_even(v.covered, v.total()),
                "ratio": if v.total() == 0 { None } else { Some(v.covered as f64 / v.total() as f64) },
            }),
        );
    }
    serde_json::json!({ "service": service, "counters": c })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_half_to_even() {
        assert_eq!(round_half_even(74.5), 74);
        assert_eq!(round_half_even(82.5), 82);
        assert_eq!(round_half_even(75.5), 76);
        assert_eq!(round_half_even(74.4), 74);
        assert_eq!(round_half_even(74.6), 75);
        assert_eq!(percent_half_even(149, 200), Some(74));
        assert_eq!(percent_half_even(165, 200), Some(82));
        assert_eq!(percent_half_even(1, 3), Some(33));
        assert_eq!(percent_half_even(0, 0), None);
        // Exact halves, where a float `covered / total * 100` is off by one ulp either way.
        assert_eq!(percent_half_even(29, 200), Some(14));
        assert_eq!(percent_half_even(31, 200), Some(16));
        assert_eq!(percent_half_even(1, 8), Some(12));
        assert_eq!(percent_half_even(3, 8), Some(38));
        assert_eq!(percent_half_even(u64::MAX, u64::MAX), Some(100));
    }

    #[test]
    fn the_summary_is_the_published_text() {
        let published = "\
==================================================================
  Simple Code Coverage Report
------------------------------------------------------------------
Service: ts-admin-order-service
------------------------------------------------------------------
TOTAL               Lines    107  Cover  29%
------------------------------------------------------------------
";
        // 31 of 107 = 28.97 %.
        let c = Counter {
            missed: 76,
            covered: 31,
        };
        assert_eq!(summary_txt("ts-admin-order-service", Some(c)), published);
        // A half rounds to even: 1 of 8 = 12.5 % → 12.
        let half = summary_txt(
            "s",
            Some(Counter {
                missed: 7,
                covered: 1,
            }),
        );
        assert!(
            half.contains("TOTAL               Lines      8  Cover  12%\n"),
            "{half}"
        );
        // No lines: 0 %, as published.
        for none in [
            None,
            Some(Counter {
                missed: 0,
                covered: 0,
            }),
        ] {
            let t = summary_txt("s", none);
            assert!(
                t.contains("TOTAL               Lines      0  Cover   0%\n"),
                "{t}"
            );
        }
        let full = summary_txt(
            "s",
            Some(Counter {
                missed: 0,
                covered: 123_456,
            }),
        );
        assert!(full.contains("Lines 123456  Cover 100%\n"), "{full}");
        assert!(published.lines().all(|l| l.len() <= 66));
    }

    const XML: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><!DOCTYPE report PUBLIC "-//JACOCO//DTD Report 1.1//EN" "report.dtd"><report name="svc"><sessioninfo id="p" start="1" dump="2"/><package name="a"><class name="a/B" sourcefilename="B.java"><method name="m" desc="()V" line="3"><counter type="LINE" missed="9" covered="9"/></method><counter type="LINE" missed="9" covered="9"/></class><counter type="LINE" missed="9" covered="9"/></package><counter type="INSTRUCTION" missed="10" covered="30"/><counter type="BRANCH" missed="1" covered="1"/><counter type="LINE" missed="51" covered="149"/><counter type="COMPLEXITY" missed="2" covered="3"/><counter type="METHOD" missed="1" covered="4"/><counter type="CLASS" missed="0" covered="1"/></report>"#;

    #[test]
    fn reads_report_level_counters_without_the_dtd() {
        let c = report_counters(XML).unwrap();
        assert_eq!(c.len(), 6);
        assert_eq!(
            c["LINE"],
            Counter {
                missed: 51,
                covered: 149
            }
        );
        assert_eq!(
            summary_table(&[("svc".into(), c.get("LINE").copied())]),
            "service\ttotal_lines\tline_coverage\nsvc\t200\t74%\n"
        );
        let j = summary_json("svc", &c);
        assert_eq!(j["counters"]["INSTRUCTION"]["percent"], 75);
        assert_eq!(j["counters"]["BRANCH"]["total"], 2);
        assert!(report_counters("<x/>").is_err());
    }

    #[test]
    fn spring_boot_jars_give_their_own_classes_only() {
        let dir = tempfile::tempdir().unwrap();
        let jar = dir.path().join("app.jar");
        {
            let f = std::fs::File::create(&jar).unwrap();
            let mut z = zip::ZipWriter::new(f);
            let o = zip::write::SimpleFileOptions::default();
            for name in [
                "BOOT-INF/classes/order/A.class",
                "BOOT-INF/classes/application.yml",
                "BOOT-INF/lib/spring.jar",
                "org/springframework/boot/loader/Launcher.class",
            ] {
                z.start_file(name, o).unwrap();
                std::io::Write::write_all(&mut z, b"\xCA\xFE\xBA\xBE").unwrap();
            }
            z.finish().unwrap();
        }
        let out = dir.path().join("classes");
        assert_eq!(extract_classes(&jar, &out).unwrap(), 1);
        assert!(out.join("order/A.class").is_file());
        assert!(!out.join("org").exists());
    }

    #[tokio::test]
    async fn jacococli_gets_the_report_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let args_file = dir.path().join("args");
        let java = dir.path().join("java");
        std::fs::write(
            &java,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\n",
                args_file.display()
            ),
        )
        .unwrap();
        let mut perms = std::fs::metadata(&java).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&java, perms).unwrap();
        let engine = ReportEngine::JacocoCli {
            java: java.clone(),
            jar: "/opt/jacococli.jar".into(),
        };
        let exec = [PathBuf::from("/d/a.exec")];
        let src = [PathBuf::from("/s1"), PathBuf::from("/s2")];
        let job = ReportJob {
            name: "ts-a-service",
            exec_files: &exec,
            classes_dir: Path::new("/c"),
            source_dirs: &src,
            xml: Path::new("/o/coverage.xml"),
            html_dir: Path::new("/o/html"),
        };
        render(&engine, &job, dir.path(), &ChildGroups::default())
            .await
            .unwrap();
        let args = std::fs::read_to_string(&args_file).unwrap();
        assert_eq!(
            args.lines().collect::<Vec<_>>(),
            [
                "-jar",
                "/opt/jacococli.jar",
                "report",
                "/d/a.exec",
                "--classfiles",
                "/c",
                "--sourcefiles",
                "/s1",
                "--sourcefiles",
                "/s2",
                "--encoding",
                "UTF-8",
                "--name",
                "ts-a-service",
                "--xml",
                "/o/coverage.xml",
                "--html",
                "/o/html"
            ]
        );
        // A failing engine's output ends up in the error.
        std::fs::write(&java, "#!/bin/sh\necho 'Exception: boom' >&2\nexit 1\n").unwrap();
        let e = render(&engine, &job, dir.path(), &ChildGroups::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("jacococli report failed") && e.contains("Exception: boom"),
            "{e}"
        );
    }

    /// Ant 1.10's output for `ant -keep-going report-0 … report-3` where report-1 fails with a
    /// two-line message and report-3 with one (stdout, stderr as Ant wrote them).
    const KEEP_GOING_OUT: &str = "Buildfile: /tmp/antk/build.xml\n\nreport-0:\n     [echo] a\n\nreport-1:\n     [echo] loading b\n\nreport-2:\n     [echo] c\n\nreport-3:\n";
    const KEEP_GOING_ERR: &str = "Target 'report-1' failed with message 'boom b\nsecond line'.\nTarget 'report-3' failed with message 'boom d'.\n\nBUILD FAILED\n/tmp/antk/build.xml:5: boom d\n\nTotal time: 1 second\n";

    #[test]
    fn each_failed_target_gets_its_own_output_and_message() {
        let names: Vec<String> = (0..4).map(|i| format!("report-{i}")).collect();
        assert_eq!(
            target_section(KEEP_GOING_OUT, "report-1", &names),
            ["     [echo] loading b"]
        );
        assert!(target_section(KEEP_GOING_OUT, "report-3", &names).is_empty());
        assert!(target_section(KEEP_GOING_OUT, "report-9", &names).is_empty());
        assert_eq!(
            target_failure(KEEP_GOING_ERR, "report-1"),
            ["boom b", "second line"]
        );
        assert_eq!(target_failure(KEEP_GOING_ERR, "report-3"), ["boom d"]);
        assert!(target_failure(KEEP_GOING_ERR, "report-2").is_empty());
        assert_eq!(tail("a\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(tail("a", 5), ["a"]);
    }

    #[test]
    fn a_batch_build_file_has_a_target_per_report() {
        let x = ant_build_xml_targets(
            &[PathBuf::from("/j/a.jar")],
            &[
                ("report-0".into(), "    <a/>\n".into()),
                ("report-1".into(), "    <b/>\n".into()),
            ],
        );
        assert!(x.contains("default=\"report-0\""), "{x}");
        assert!(
            x.contains("  <target name=\"report-0\">\n    <a/>\n  </target>\n  <target name=\"report-1\">\n    <b/>\n  </target>\n</project>\n"),
            "{x}"
        );
    }

    #[test]
    fn ant_build_files_escape_paths() {
        let x = ant_build_xml(&[PathBuf::from("/j/a&b.jar")], "");
        assert!(x.contains("location=\"/j/a&amp;b.jar\""), "{x}");
    }
}
