//! The one place that prints run progress: an indicatif line per running step (with elapsed
//! time) on a terminal, timestamped plain lines otherwise.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    Always,
    Never,
}

#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    bars: Option<MultiProgress>,
    state: Mutex<HashMap<String, StepLine>>,
}

struct StepLine {
    bar: Option<ProgressBar>,
    last_plain: Option<(Instant, String)>,
}

/// Plain mode prints a step's status at most this often.
const PLAIN_MESSAGE_INTERVAL: Duration = Duration::from_secs(2);

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        let bars = match mode {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
        };
        Self {
            inner: Arc::new(Inner {
                bars: bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
                state: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A run-level line ("interrupted: cancelling 2 steps").
    pub fn note(&self, line: &str) {
        match &self.inner.bars {
            Some(m) => {
                let _ = m.println(line);
            }
            None => plain(line),
        }
    }

    pub fn step_started(&self, step: &str, kind: &str, attempt: u32) {
        let what = if attempt > 1 {
            format!("started ({kind}, attempt {attempt})")
        } else {
            format!("started ({kind})")
        };
        let bar = self.inner.bars.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} {prefix:.bold} [{elapsed}] {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(step.to_string());
            bar.set_message(kind.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if bar.is_none() {
            plain(&format!("{step}: {what}"));
        }
        self.lock().insert(
            step.to_string(),
            StepLine {
                bar,
                last_plain: None,
            },
        );
    }

    pub fn message(&self, step: &str, message: String) {
        let mut state = self.lock();
        let Some(line) = state.get_mut(step) else {
            return;
        };
        if let Some(bar) = &line.bar {
            bar.set_message(message);
            return;
        }
        let due = line
            .last_plain
            .as_ref()
            .is_none_or(|(at, last)| *last != message && at.elapsed() >= PLAIN_MESSAGE_INTERVAL);
        if due {
            plain(&format!("{step}: {message}"));
            line.last_plain = Some((Instant::now(), message));
        }
    }

    /// `outcome` is e.g. "succeeded", "failed: exit status 2".
    pub fn step_finished(&self, step: &str, ok: bool, outcome: &str, elapsed: Duration) {
        let line = self.lock().remove(step);
        let text = format!(
            "{} {step}: {outcome} after {}",
            if ok { "✔" } else { "✘" },
            format_elapsed(elapsed)
        );
        match line.and_then(|l| l.bar) {
            Some(bar) => {
                bar.finish_and_clear();
                if let Some(m) = &self.inner.bars {
                    m.remove(&bar);
                    let _ = m.println(text);
                }
            }
            None => plain(&text),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, StepLine>> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn plain(line: &str) {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let _ = writeln!(std::io::stderr().lock(), "{now} {line}");
}

pub fn format_elapsed(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}
