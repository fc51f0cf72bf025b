//! `ttplan instrument`: add the JaCoCo agent to Kubernetes workloads.

use crate::cli::InstrumentArgs;
use crate::exit;

/// `ttplan instrument`: input file (or stdin) → output file, stdout, or the input in place.
pub(super) fn run(a: &InstrumentArgs) -> u8 {
    use crate::coverage::instrument::{instrument, InstrumentOptions};
    use std::io::{Read, Write};

    let mut includes = std::collections::BTreeMap::new();
    for kv in &a.includes {
        let Some((k, v)) = kv.split_once('=') else {
            eprintln!("error: --includes expects SERVICE=PATTERN, got `{kv}`");
            return exit::INVALID;
        };
        includes.insert(k.trim().to_string(), v.trim().to_string());
    }
    let stdin = a.input.as_os_str() == "-";
    if stdin && a.in_place {
        eprintln!("error: --in-place needs a file, not stdin");
        return exit::INVALID;
    }
    let text = if stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    } else {
        std::fs::read_to_string(&a.input)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", a.input.display());
            return exit::INVALID;
        }
    };
    let opts = InstrumentOptions {
        agent_image: a.agent_image.clone(),
        agent_path: a.agent_path.clone(),
        init_command: None,
        port: a.port,
        address: a.address.clone(),
        includes,
        source_root: a.source_root.clone(),
        default_includes: a.default_includes.clone(),
        excludes: a.excludes.clone(),
        containers: a.containers.clone(),
        skip: a.skip.clone(),
        train_ticket_defaults: !a.no_train_ticket_defaults,
    };
    let (out, report) = match instrument(&text, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: {e}", a.input.display());
            return exit::INVALID;
        }
    };
    let dest = if a.in_place {
        Some(a.input.clone())
    } else {
        a.output.clone()
    };
    let written = match &dest {
        Some(path) => crate::atomic_write::write_atomic(path, out.as_bytes()),
        None => std::io::stdout().lock().write_all(out.as_bytes()),
    };
    if let Err(e) = written {
        let to = dest.map_or_else(|| "stdout".to_string(), |p| p.display().to_string());
        eprintln!("error: cannot write {to}: {e}");
        return exit::STEP_FAILED;
    }
    eprintln!(
        "instrumented {} workloads ({} already instrumented, {} skipped, {} other documents)",
        report.changed.len(),
        report.unchanged.len(),
        report.skipped.len(),
        report.other_documents
    );
    exit::SUCCESS
}
