//! Pod logs (`log_data/<EXP>/<pod>/<pod>[_previous]_<ts>.log`), read line by line. An
//! error line is one naming ERROR/FATAL/SEVERE or an exception (stack frames are not counted
//! again). A line's time is its leading timestamp (`--timestamps` RFC 3339, or the
//! `YYYY-MM-DD HH:MM:SS` most Java loggers print, read as UTC); lines without one take the
//! time of the line before.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};

use super::timeline::{Ms, Phase, Timeline};

pub const TOP_PODS: usize = 6;

const MARKERS: [&[u8]; 5] = [b"ERROR", b"FATAL", b"SEVERE", b"Exception", b"panic:"];

pub fn is_error_line(line: &[u8]) -> bool {
    let trimmed = line.trim_ascii_start();
    if trimmed.len() < line.len() && (trimmed.starts_with(b"at ") || trimmed.starts_with(b"... ")) {
        return false;
    }
    MARKERS
        .iter()
        .any(|m| line.windows(m.len()).any(|w| w == *m))
}

/// The timestamp at the start of a line (within its first 48 bytes), epoch ms.
pub fn line_time(line: &[u8]) -> Option<Ms> {
    let head = &line[..line.len().min(48)];
    let start = head.iter().position(u8::is_ascii_digit)?;
    let text = std::str::from_utf8(&head[start..]).ok().or_else(|| {
        // Cut inside a multi-byte character: keep the valid prefix.
        let valid = std::str::from_utf8(&head[start..]).err()?.valid_up_to();
        std::str::from_utf8(&head[start..start + valid]).ok()
    })?;
    let b = text.as_bytes();
    let shape = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !shape {
        return None;
    }
    let token_end = text[11..]
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, ':' | '.' | ',' | 'Z' | '+' | '-')))
        .map_or(text.len(), |i| i + 11);
    let token = format!("{}T{}", &text[..10], &text[11..token_end]);
    if token.len() < 19 {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(&token) {
        return Some(t.with_timezone(&Utc).timestamp_millis());
    }
    // No zone: local time of the pod, taken as UTC (the cluster's usual setting).
    let naive = NaiveDateTime::parse_from_str(&token[..19], "%Y-%m-%dT%H:%M:%S").ok()?;
    let frac: String = token[19..]
        .strip_prefix(['.', ','])
        .map(|f| f.chars().take_while(char::is_ascii_digit).take(3).collect())
        .unwrap_or_default();
    let ms = match frac.len() {
        0 => 0,
        n => frac.parse::<i64>().unwrap_or(0) * 10_i64.pow(3 - n as u32),
    };
    Some(naive.and_utc().timestamp_millis() + ms)
}

#[derive(Debug, Clone, Default)]
pub struct PodRow {
    pub pod: String,
    pub files: u64,
    pub lines: u64,
    pub errors: u64,
    pub phase_errors: [u64; 3],
    /// Error lines with no timestamp before them.
    pub untimed_errors: u64,
    pub per_bin: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct LogAgg {
    pub dir: PathBuf,
    pub pods: Vec<PodRow>,
    pub lines: u64,
    pub errors: u64,
    pub problems: Vec<String>,
}

impl PodRow {
    /// A pod's folder: every `*.log` file in it, in name order.
    fn read(pd: &Path, tl: &Timeline, line: &mut Vec<u8>, problems: &mut Vec<String>) -> Self {
        let mut row = PodRow {
            pod: pd
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            per_bin: vec![0; tl.bins],
            ..Default::default()
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(pd)
            .map(|e| {
                e.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        for f in files {
            row.count_file(&f, tl, line, problems);
        }
        row
    }

    /// One log file: its lines, and its error lines by bin and phase (an error line takes the
    /// time of the last line that had one).
    fn count_file(
        &mut self,
        f: &Path,
        tl: &Timeline,
        line: &mut Vec<u8>,
        problems: &mut Vec<String>,
    ) {
        let file = match std::fs::File::open(f) {
            Ok(x) => x,
            Err(e) => {
                problems.push(format!("{}: {e}", f.display()));
                return;
            }
        };
        self.files += 1;
        let mut r = std::io::BufReader::with_capacity(1 << 18, file);
        let mut last: Option<Ms> = None;
        loop {
            line.clear();
            match r.read_until(b'\n', line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    problems.push(format!("{}: {e}", f.display()));
                    break;
                }
            }
            self.lines += 1;
            if let Some(t) = line_time(line) {
                last = Some(t);
            }
            if !is_error_line(line) {
                continue;
            }
            self.errors += 1;
            match last {
                Some(t) => {
                    self.per_bin[tl.bin(t)] += 1;
                    self.phase_errors[tl.phase(t) as usize] += 1;
                }
                None => self.untimed_errors += 1,
            }
        }
    }
}

impl LogAgg {
    pub fn from_dir(dir: &Path, tl: &Timeline) -> Self {
        let mut agg = LogAgg {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                agg.problems.push(format!("{}: {e}", dir.display()));
                return agg;
            }
        };
        let mut pod_dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        pod_dirs.sort();
        let mut line = Vec::new();
        for pd in pod_dirs {
            let row = PodRow::read(&pd, tl, &mut line, &mut agg.problems);
            agg.lines += row.lines;
            agg.errors += row.errors;
            agg.pods.push(row);
        }
        agg.pods
            .sort_by(|a, b| b.errors.cmp(&a.errors).then(a.pod.cmp(&b.pod)));
        agg
    }

    pub fn phase_errors(&self, phase: Phase) -> u64 {
        self.pods
            .iter()
            .map(|p| p.phase_errors[phase as usize])
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::timeline::Window;

    #[test]
    fn timestamps_of_common_log_shapes() {
        let t = 1_762_197_701_123; // 2025-11-03T19:21:41.123Z
        assert_eq!(line_time(b"2025-11-03T19:21:41.123456789Z INFO x"), Some(t));
        assert_eq!(
            line_time(b"2025-11-03 19:21:41.123  INFO 1 --- [main]"),
            Some(t)
        );
        assert_eq!(line_time(b"[2025-11-03 19:21:41,123] ERROR"), Some(t));
        assert_eq!(line_time(b"2025-11-03T20:21:41.123+01:00 x"), Some(t));
        assert_eq!(line_time(b"\tat com.x.Y(Y.java:1)"), None);
        assert_eq!(line_time(b"12:00 nothing"), None);
    }

    #[test]
    fn error_lines_but_not_stack_frames() {
        assert!(is_error_line(b"2025-11-03 19:21:41 ERROR boom"));
        assert!(is_error_line(b"java.lang.IllegalStateException: x"));
        assert!(!is_error_line(
            b"\tat com.x.ExceptionHandler.handle(X.java:1)"
        ));
        assert!(!is_error_line(b"2025-11-03 19:21:41 INFO fine"));
    }

    #[test]
    fn errors_per_pod_over_time() {
        let d = tempfile::tempdir().unwrap();
        for (pod, errs) in [("ts-preserve-service-1", 3), ("ts-order-service-1", 1)] {
            let pd = d.path().join(pod);
            std::fs::create_dir_all(&pd).unwrap();
            let mut s = String::from("untimed ERROR before any timestamp\n");
            for m in 0..30 {
                s.push_str(&format!("2025-01-01 00:{m:02}:00.000 INFO ok\n"));
                if (10..20).contains(&m) {
                    for _ in 0..errs {
                        s.push_str("java.lang.RuntimeException: injected\n\tat a.B.c(B.java:1)\n");
                    }
                }
            }
            std::fs::write(pd.join(format!("{pod}_20250101_000000.log")), s).unwrap();
        }
        let t0 = 1_735_689_600_000;
        let tl = Timeline::new(
            t0,
            t0 + 1_800_000,
            vec![Window {
                start: t0 + 600_000,
                end: t0 + 1_200_000,
            }],
        );
        let a = LogAgg::from_dir(d.path(), &tl);
        assert_eq!(a.pods[0].pod, "ts-preserve-service-1");
        assert_eq!(a.pods[0].errors, 31);
        assert_eq!(a.pods[0].untimed_errors, 1);
        assert_eq!(a.pods[0].phase_errors, [0, 30, 0]);
        assert_eq!(
            a.pods[0].per_bin[tl.bin(t0 + 600_000)..tl.bin(t0 + 1_200_000)]
                .iter()
                .sum::<u64>(),
            30
        );
        assert_eq!(a.phase_errors(Phase::Fault), 40);
    }
}
