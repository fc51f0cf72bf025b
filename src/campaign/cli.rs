//! `ttplan campaign run|validate|schema`.

use crate::cli::CampaignCommand;
use crate::engine::launch::SignalHub;
use crate::engine::progress::Progress;
use crate::exit;

use super::runner::{run_campaign, validate, CampaignOptions};

/// `sandbox`: the manifest description of the simulated environment `campaign run --sandbox`
/// started (its variables are exported and the cluster settings point at it).
pub fn run(cmd: CampaignCommand, sandbox: Option<serde_json::Value>) -> u8 {
    match cmd {
        CampaignCommand::Schema => {
            crate::out(&super::campaign_schema_json());
            exit::SUCCESS
        }
        CampaignCommand::Validate { file } => match load_and_validate(&file, "dataset".as_ref()) {
            Ok(c) => {
                crate::out(&format!(
                    "ok {} ({} experiments)\n",
                    file.display(),
                    c.experiments.len()
                ));
                exit::SUCCESS
            }
            Err(code) => code,
        },
        CampaignCommand::Run(a) => {
            let c = match load_and_validate(&a.file, &a.out) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let rt = match crate::engine::launch::runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let opts = CampaignOptions {
                out: a.out.clone(),
                resume: a.resume,
                max_parallel: a.max_parallel,
                progress: a.progress,
                kube: a.kube.settings(),
                sandbox,
            };
            let code = rt.block_on(async move {
                let hub = SignalHub::install(Progress::new(opts.progress));
                run_campaign(c, opts, hub).await
            });
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            code
        }
    }
}

/// Loads the campaign and every plan it runs; prints every problem of every file.
fn load_and_validate(file: &std::path::Path, out: &std::path::Path) -> Result<super::Campaign, u8> {
    let c = super::load_campaign(file).map_err(|e| {
        eprintln!("{:?}", miette::Report::new(e));
        exit::INVALID
    })?;
    if let Err(problems) = validate(&c, out) {
        let n: usize = problems.iter().map(|(_, e)| e.len()).sum();
        for (what, errs) in problems.iter() {
            eprintln!("in experiment {what}:");
            eprintln!("{:?}", miette::Report::new(errs.clone()));
        }
        eprintln!(
            "error: the campaign is invalid: {n} problem{} in {} plan{}; nothing ran",
            if n == 1 { "" } else { "s" },
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        return Err(exit::INVALID);
    }
    Ok(c)
}
