//! `generate`: a synthetic fleet's telemetry.

use anyhow::Result;

use super::{Output, human_rate, now_whole_seconds};
use crate::cli::GenerateArgs;
use crate::config::Config;
use crate::generate::{self, GenerateOptions};
use crate::workspace::Workspace;

pub(super) fn run(config: &Config, ws: &Workspace, out: &Output, args: GenerateArgs) -> Result<u8> {
    let opts = GenerateOptions {
        devices: args.fleet.devices,
        seed: args.fleet.seed,
        as_of_us: args.as_of.unwrap_or_else(now_whole_seconds),
        out: args.out.unwrap_or_else(|| ws.raw_telemetry()),
    };
    let summary = step(config, &opts, out)?;
    out.summary(&summary, || text(&summary))?;
    Ok(0)
}

pub(super) fn step(
    config: &Config,
    opts: &GenerateOptions,
    out: &Output,
) -> Result<generate::GenerateSummary> {
    let bar = out.progress(opts.devices, "generating", "devices");
    let summary = generate::generate(config, opts, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    Ok(summary)
}

pub(super) fn text(s: &generate::GenerateSummary) -> String {
    format!(
        "generated {} devices ({} reports) into {} in {:.2} s ({} devices/s)",
        s.devices,
        s.rows,
        s.path.display(),
        s.seconds,
        human_rate(s.devices as f64 / s.seconds.max(1e-9))
    )
}
