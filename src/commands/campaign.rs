//! `ttplan campaign …`; with `run --sandbox`, one simulated environment serves every experiment
//! and lives until the campaign is over.

use crate::cli::CampaignCommand;

pub fn campaign(mut cmd: CampaignCommand) -> u8 {
    let mut sandbox = None;
    if let CampaignCommand::Run(a) = &mut cmd {
        if a.sandbox {
            match crate::sandbox::for_campaign(a.seed) {
                Ok(s) => {
                    a.kube.kubeconfig = Some(s.sandbox.kubeconfig().to_path_buf());
                    sandbox = Some(s);
                }
                Err(code) => return code,
            }
        }
    }
    crate::campaign::cli::run(cmd, sandbox.as_ref().map(crate::sandbox::Started::describe))
}
