//! The log half of a collection: list the pods, plan their logs, fetch them through the pool
//! and record every outcome, reporting progress as logs finish.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::fetch::{Failure, Pool};
use super::jobs::{self, Job};
use super::report::{ErrorReport, FileReport, PodReport, Skipped};
use super::{Collector, LogsError};
use crate::kube::pods::PodQuery;

/// What the log half produced, merged into the report by [`super::collect`].
#[derive(Default)]
pub(super) struct LogsPart {
    pub(super) pods: Vec<PodReport>,
    pub(super) files: Vec<FileReport>,
    pub(super) skipped: Vec<Skipped>,
    pub(super) errors: Vec<ErrorReport>,
}

impl Collector<'_> {
    pub(super) async fn logs(&self) -> Result<LogsPart, LogsError> {
        let mut part = LogsPart::default();
        let Some(pods) = self.list_pods(&mut part).await? else {
            return Ok(part);
        };
        let jobs = jobs::plan_jobs(&pods, self.settings, &self.ts, &self.dir_abs, &mut part);
        let mut tally = Tally::new(&jobs);
        (self.progress)(tally.started());
        let mut pool = Pool::spawn(self.kube, self.settings, jobs);
        while let Some(joined) = pool.next(self.cancel).await? {
            tally.done += 1;
            let (job, result) = match joined {
                Ok(r) => r,
                Err(e) => {
                    part.errors.push(ErrorReport::namespace(format!(
                        "a log task of namespace {} ended abnormally: {e}",
                        self.settings.namespace
                    )));
                    continue;
                }
            };
            tally.bytes += part.record(&job, result);
            tally.finished(&job.pod);
            (self.progress)(tally.message());
        }
        part.errors.sort_by(|a, b| {
            (&a.pod, &a.container, a.instance).cmp(&(&b.pod, &b.container, b.instance))
        });
        Ok(part)
    }

    /// The selected pods; `None` when they cannot be listed (recorded as an error).
    async fn list_pods(&self, part: &mut LogsPart) -> Result<Option<Vec<Pod>>, LogsError> {
        let query = PodQuery {
            namespace: &self.settings.namespace,
            selector: self.settings.selector.as_deref(),
            name_prefixes: &self.settings.name_prefixes,
        };
        let listed = tokio::select! {
            r = query.pods(self.kube) => r,
            () = self.cancel.cancelled() => return Err(LogsError::Cancelled),
        };
        match listed {
            Ok(pods) => Ok(Some(pods)),
            Err(e) => {
                part.errors.push(ErrorReport::namespace(e.to_string()));
                Ok(None)
            }
        }
    }
}

impl LogsPart {
    /// Records what one fetch gave: its file and copies, a skip or an error. Returns the bytes
    /// written (0 when none).
    fn record(&mut self, job: &Job, result: Result<Option<u64>, Failure>) -> u64 {
        match result {
            Ok(Some(n)) => {
                self.files.push(FileReport {
                    path: job.rel.clone(),
                    pod: job.pod.clone(),
                    container: job.container.clone(),
                    instance: job.instance,
                    bytes: n,
                    copy_of: None,
                    abs: job.abs.clone(),
                });
                for (abs, rel) in &job.copies {
                    self.files.push(FileReport {
                        path: rel.clone(),
                        pod: job.pod.clone(),
                        container: job.container.clone(),
                        instance: job.instance,
                        bytes: n,
                        copy_of: Some(job.rel.clone()),
                        abs: abs.clone(),
                    });
                }
                n
            }
            Ok(None) => {
                self.skipped.push(Skipped {
                    pod: job.pod.clone(),
                    container: job.container.clone(),
                    instance: job.instance,
                    reason: "the previous log is empty: no file".into(),
                });
                0
            }
            Err(f) => {
                if f.not_found {
                    self.mark_vanished(&job.pod);
                }
                self.errors.push(ErrorReport {
                    pod: Some(job.pod.clone()),
                    container: Some(job.container.clone()),
                    instance: Some(job.instance),
                    not_found: f.not_found,
                    message: f.message,
                });
                0
            }
        }
    }

    fn mark_vanished(&mut self, pod: &str) {
        for p in self.pods.iter_mut().filter(|p| p.name == pod) {
            p.vanished = true;
        }
    }
}

/// Counts for the progress line: logs and pods finished, bytes written.
struct Tally {
    /// Logs still to finish per pod; a pod is done at 0.
    remaining: BTreeMap<String, usize>,
    pods_total: usize,
    pods_done: usize,
    total: usize,
    /// Tasks ended, including any that ended abnormally.
    done: usize,
    bytes: u64,
}

impl Tally {
    fn new(jobs: &[Job]) -> Self {
        let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
        for job in jobs {
            *remaining.entry(job.pod.clone()).or_default() += 1;
        }
        Self {
            pods_total: remaining.len(),
            remaining,
            pods_done: 0,
            total: jobs.len(),
            done: 0,
            bytes: 0,
        }
    }

    fn started(&self) -> String {
        format!("0/{} pods, 0/{} logs", self.pods_total, self.total)
    }

    fn finished(&mut self, pod: &str) {
        if let Some(left) = self.remaining.get_mut(pod) {
            *left -= 1;
            if *left == 0 {
                self.pods_done += 1;
            }
        }
    }

    fn message(&self) -> String {
        format!(
            "{}/{} pods, {}/{} logs, {:.1} MiB",
            self.pods_done,
            self.pods_total,
            self.done,
            self.total,
            self.bytes as f64 / (1024.0 * 1024.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::logs::naming::Instance;
    use std::path::PathBuf;

    fn job(pod: &str) -> Job {
        Job {
            pod: pod.into(),
            container: "app".into(),
            instance: Instance::Current,
            abs: PathBuf::from(format!("/out/{pod}.log")),
            rel: format!("{pod}.log"),
            copies: vec![(
                PathBuf::from(format!("/out/{pod}_app.log")),
                format!("{pod}_app.log"),
            )],
        }
    }

    #[test]
    fn a_pod_counts_as_done_when_its_last_log_finishes() {
        let jobs = [job("a"), job("a"), job("b")];
        let mut tally = Tally::new(&jobs);
        assert_eq!(tally.started(), "0/2 pods, 0/3 logs");
        tally.done += 1;
        tally.bytes += 1024 * 1024;
        tally.finished("a");
        assert_eq!(tally.message(), "0/2 pods, 1/3 logs, 1.0 MiB");
        tally.done += 1;
        tally.finished("a");
        assert_eq!(tally.message(), "1/2 pods, 2/3 logs, 1.0 MiB");
    }

    #[test]
    fn a_fetched_log_and_its_copy_are_files_and_a_404_marks_the_pod_vanished() {
        let mut part = LogsPart::default();
        for name in ["a", "b"] {
            part.pods.push(PodReport {
                name: name.into(),
                phase: None,
                node: None,
                vanished: false,
                containers: Vec::new(),
            });
        }
        assert_eq!(part.record(&job("a"), Ok(Some(7))), 7);
        assert_eq!(part.files.len(), 2);
        assert_eq!(part.files[1].copy_of.as_deref(), Some("a.log"));
        assert_eq!(part.files[1].bytes, 7);
        let gone = Failure {
            message: "gone".into(),
            not_found: true,
        };
        assert_eq!(part.record(&job("b"), Err(gone)), 0);
        let vanished: Vec<bool> = part.pods.iter().map(|p| p.vanished).collect();
        assert_eq!(vanished, [false, true]);
        assert!(part.errors[0].not_found);
    }
}
