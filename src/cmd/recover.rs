//! `recover`: sanitize, triage, classify and publish a run (or one shard of it).

use anyhow::Result;

use super::{Output, now_whole_seconds};
use crate::cli::RecoverArgs;
use crate::config::Config;
use crate::recover::{self, RecoverOptions};
use crate::workspace::Workspace;

pub(super) fn run(config: &Config, ws: &Workspace, out: &Output, args: RecoverArgs) -> Result<u8> {
    // A partitioned input proposes the as-of it was split with.
    let proposed = args
        .input
        .iter()
        .find_map(|p| crate::recover::shard::open_partition(p).ok().flatten())
        .map(|m| m.as_of_us);
    let opts = RecoverOptions {
        inputs: args.input,
        as_of_us: args.as_of.or(proposed).unwrap_or_else(now_whole_seconds),
        bucket_rows: recover::BUCKET_ROWS,
        memory_rows: recover::MEMORY_ROWS,
        skip_unknown: args.skip_unknown,
        shard: args.shard,
    };
    let summary = step(config, &opts, ws, out)?;
    out.summary(&summary, || text(&summary))?;
    Ok(0)
}

pub(super) fn step(
    config: &Config,
    opts: &RecoverOptions,
    ws: &Workspace,
    out: &Output,
) -> Result<recover::RecoverSummary> {
    let spinner = out.spinner("recovering: sanitize, triage, classify, load");
    let summary = recover::recover(config, opts, ws);
    spinner.finish_and_clear();
    summary
}

pub(super) fn text(s: &recover::RecoverSummary) -> String {
    let list = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let skipped = if s.skipped.is_empty() {
        String::new()
    } else {
        format!(
            "\n  skipped {} files that are not telemetry (--skip-unknown): {}",
            s.skipped.len(),
            s.skipped.join(", ")
        )
    };
    let shard = s.shard.as_ref().map_or(String::new(), |k| {
        format!(", shard {k} (merge publishes the run)")
    });
    format!(
        "run {}{shard}: {} rows in, {} clean, {} quarantined ({})\n  {} devices: {}\n  actions: {}\n  {} blind devices; cost ${:.2}; {} truck rolls avoided (${:.2}); {:.2} s{}",
        s.run_id,
        s.rows_in,
        s.rows_clean,
        s.rows_quarantined,
        list(&s.quarantined_by_reason),
        s.devices,
        list(&s.devices_by_state),
        list(&s.devices_by_action),
        s.blind_devices,
        s.cost_usd,
        s.truck_rolls_avoided,
        s.cost_avoided_usd,
        s.timings.get("total").copied().unwrap_or(0.0),
        skipped
    )
}
