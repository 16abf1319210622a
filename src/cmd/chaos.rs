//! `chaos`: corrupts a telemetry file the way real exports go wrong, with a log.

use anyhow::{Result, bail};

use super::Output;
use crate::chaos::{self, ChaosOptions};
use crate::cli::ChaosArgs;
use crate::workspace::Workspace;

pub(super) fn run(ws: &Workspace, out: &Output, args: ChaosArgs) -> Result<u8> {
    let opts = ChaosOptions {
        input: args.input.unwrap_or_else(|| ws.raw_telemetry()),
        out: args.out.unwrap_or_else(|| ws.chaos_telemetry()),
        log: args.log.unwrap_or_else(|| ws.chaos_log()),
        rate: args.rate,
        seed: args.seed,
    };
    let summary = step(&opts, out)?;
    out.summary(&summary, || text(&summary))?;
    Ok(0)
}

pub(super) fn step(opts: &ChaosOptions, out: &Output) -> Result<chaos::ChaosSummary> {
    if !opts.input.is_file() {
        bail!(
            "chaos input {} does not exist or is not a file (run `sentinel generate` first, or pass --input)",
            opts.input.display()
        );
    }
    let bar = out.progress(0, "corrupting", "rows");
    let summary = chaos::chaos(opts, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    Ok(summary)
}

pub(super) fn text(s: &chaos::ChaosSummary) -> String {
    let kinds: Vec<String> = s.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(
        "corrupted {} of {} rows into {} ({} rows out; log {}) in {:.2} s\n  kinds: {}",
        s.rows_logged,
        s.rows_in,
        s.out.display(),
        s.rows_out,
        s.log.display(),
        s.seconds,
        kinds.join(", ")
    )
}
