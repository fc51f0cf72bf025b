//! The coverage modality: `coverage_data/<EXP>/<pod>__jacoco-<pod>.exec` and
//! `coverage_report/<EXP>/<service>/{coverage.xml, html/, merged.exec, coverage-summary.txt}`.

use std::path::Path;

use super::{list_dir, Finding};

/// The boxed summary's rules: 66 `=` / `-`.
const EQUALS: &str = "==================================================================";
const DASHES: &str = "------------------------------------------------------------------";

/// The exact `coverage-summary.txt` of one service (`../shared/reference/DATASET.md`).
///
/// # Errors
/// The first line that differs from the published format.
pub fn check_summary(text: &str, service: &str) -> Result<(u64, u32), String> {
    if !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let lines: Vec<&str> = text[..text.len() - 1].split('\n').collect();
    let fixed = [
        (0, EQUALS.to_string()),
        (1, "  Simple Code Coverage Report".to_string()),
        (2, DASHES.to_string()),
        (3, format!("Service: {service}")),
        (4, DASHES.to_string()),
        (6, DASHES.to_string()),
    ];
    if lines.len() != 7 {
        return Err(format!("{} lines, want 7", lines.len()));
    }
    for (i, want) in fixed {
        if lines[i] != want {
            return Err(format!("line {}: `{}`, want `{want}`", i + 1, lines[i]));
        }
    }
    let total = lines[5];
    let parsed = total
        .strip_prefix(&format!("{:<20}Lines ", "TOTAL"))
        .and_then(|r| r.split_once("  Cover "))
        .and_then(|(n, p)| {
            Some((
                n.trim().parse::<u64>().ok()?,
                p.strip_suffix('%')?.trim().parse::<u32>().ok()?,
            ))
        });
    match parsed {
        Some((n, p))
            if p <= 100 && total == format!("{:<20}Lines {n:>6}  Cover {p:>3}%", "TOTAL") =>
        {
            Ok((n, p))
        }
        _ => Err(format!(
            "line 6: `{total}`, want `TOTAL` padded to 20, `Lines ` + 6-wide count, `  Cover ` + 3-wide percent + `%`"
        )),
    }
}

/// `coverage_data/<EXP>/`: every file is `<pod>__jacoco-<pod>.exec` (the same pod twice).
pub fn check_exec_dir(dir: &Path, finding: &mut Finding) {
    let Some(files) = list_dir(dir, finding) else {
        return;
    };
    let mut execs = 0;
    for f in files {
        let ok = f
            .strip_suffix(".exec")
            .and_then(|s| s.split_once("__jacoco-"))
            .is_some_and(|(a, b)| !a.is_empty() && a == b);
        if ok {
            execs += 1;
        } else {
            finding.problem(format!("`{f}` is not `<pod>__jacoco-<pod>.exec`"));
        }
    }
    if execs == 0 {
        finding.problem("no `<pod>__jacoco-<pod>.exec` file".into());
    }
    finding.summary = format!("{execs} exec files");
}

/// `coverage_report/<EXP>/<service>/`: the four entries per service, the summary's exact text,
/// the XML's report name.
pub fn check_report_dir(dir: &Path, finding: &mut Finding) {
    let Some(entries) = list_dir(dir, finding) else {
        return;
    };
    let mut services = 0;
    for service in entries {
        let sdir = dir.join(&service);
        if !sdir.is_dir() {
            continue; // e.g. a campaign-wide summary beside the service folders
        }
        services += 1;
        for (entry, want_dir) in [
            ("coverage.xml", false),
            ("html", true),
            ("merged.exec", false),
            ("coverage-summary.txt", false),
        ] {
            let p = sdir.join(entry);
            if (want_dir && !p.is_dir()) || (!want_dir && !p.is_file()) {
                finding.problem(format!("{service}: no `{entry}`"));
            }
        }
        if let Ok(text) = std::fs::read_to_string(sdir.join("coverage-summary.txt")) {
            if let Err(e) = check_summary(&text, &service) {
                finding.problem(format!("{service}/coverage-summary.txt: {e}"));
            }
        }
        if let Ok(xml) = std::fs::read_to_string(sdir.join("coverage.xml")) {
            if !xml.contains(r#"<report name="JaCoCo Coverage Report""#) {
                finding.problem(format!(
                    "{service}/coverage.xml: no `<report name=\"JaCoCo Coverage Report\">`"
                ));
            }
        }
    }
    if services == 0 {
        finding.problem("no service folder".into());
    }
    finding.summary = format!("{services} services");
}

/// Why a sandbox run rendered no coverage reports, from its manifest: the `not_simulated`
/// output of its `coverage-report` step (a host without a JVM, Ant and JaCoCo's jars).
pub fn not_simulated(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let m: serde_json::Value = serde_json::from_str(&text).ok()?;
    m.get("steps")?
        .as_object()?
        .iter()
        .find_map(|(name, step)| {
            if step.get("kind")?.as_str()? != "coverage-report" {
                return None;
            }
            let why = step.get("outputs")?.get("not_simulated")?.as_str()?;
            Some(format!("step `{name}`: {why}"))
        })
}

/// A sandbox run without the report engine: the reports are missing for a known reason, which
/// the table says instead of a bare "no folder". Still a violation: the folder is not a
/// drop-in for the published dataset's loaders without them.
pub fn mark_not_simulated(finding: &mut Finding, why: &str) {
    finding.summary = "not simulated (sandbox run without a JVM)".into();
    finding.problems = vec![format!(
        "the run's coverage reports were not simulated, {why}"
    )];
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLISHED: &str = "==================================================================
  Simple Code Coverage Report
------------------------------------------------------------------
Service: ts-admin-order-service
------------------------------------------------------------------
TOTAL               Lines    107  Cover  29%
------------------------------------------------------------------
";

    #[test]
    fn a_sandbox_manifest_says_why_reports_are_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path().join("experiment_manifest.json");
        assert_eq!(not_simulated(&m), None);
        std::fs::write(
            &m,
            r#"{"steps": {"coverage": {"kind": "collect-coverage", "outputs": {}},
                "coverage_report": {"kind": "coverage-report",
                  "outputs": {"not_simulated": "not simulated: needs a JVM (missing: `ant`)"}}}}"#,
        )
        .unwrap();
        let why = not_simulated(&m).unwrap();
        assert_eq!(
            why,
            "step `coverage_report`: not simulated: needs a JVM (missing: `ant`)"
        );
        let mut f = Finding::new("coverage_report");
        check_report_dir(&tmp.path().join("absent"), &mut f);
        mark_not_simulated(&mut f, &why);
        assert_eq!(f.problems.len(), 1);
        assert!(f.problems[0].contains("missing: `ant`"), "{:?}", f.problems);
        assert!(f.summary.starts_with("not simulated"));
    }

    #[test]
    fn the_published_summary_passes() {
        assert_eq!(
            check_summary(PUBLISHED, "ts-admin-order-service"),
            Ok((107, 29))
        );
    }

    #[test]
    fn any_other_text_fails_with_the_line() {
        let e = check_summary(PUBLISHED, "ts-order-service").unwrap_err();
        assert!(e.starts_with("line 4:"), "{e}");
        let tabbed = "service\ttotal_lines\tline_coverage\nts-x\t107\t29\n";
        assert_eq!(
            check_summary(tabbed, "ts-x").unwrap_err(),
            "2 lines, want 7"
        );
        let narrow = PUBLISHED.replace("Lines    107", "Lines 107");
        assert!(check_summary(&narrow, "ts-admin-order-service")
            .unwrap_err()
            .starts_with("line 6:"));
        assert_eq!(
            check_summary(PUBLISHED.trim_end(), "ts-admin-order-service").unwrap_err(),
            "does not end with a newline"
        );
    }
}
