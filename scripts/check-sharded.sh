#!/usr/bin/env bash
# End-to-end check of the scale-out deploy files, with stand-ins for the schedulers
# (scripts/fake/: sbatch and srun run the batch scripts here, kubectl runs a Job's pods here):
#   deploy/local/sharded-recover.sh    3 shards, 2 at a time, with xargs -P
#   deploy/slurm/submit.sh             the 8-task array, then the dependent merge and report
#   deploy/kubernetes/run-sharded.sh   the 8-pod Indexed Job, then the merge Job
# Each must publish a run whose analytics equal a plain recover's of the same export.
# Needs the release binary (SENTINEL, default $CARGO_TARGET_DIR/release/sentinel) and PyYAML.
# Usage: scripts/check-sharded.sh        (about 15 s)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${SENTINEL:-${CARGO_TARGET_DIR:-target}/release/sentinel}")
python3 -c 'import yaml' 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check pyyaml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
as_of=2026-11-25T12:00:00Z
mkdir -p "$tmp/bin" "$tmp/exports"
ln -s "$bin" "$tmp/bin/sentinel"
cp scripts/fake/* "$tmp/bin/"
export PATH="$tmp/bin:$PATH"

sentinel --workdir "$tmp/gen" --quiet generate --devices 5000 --as-of "$as_of"
sentinel --workdir "$tmp/gen" --quiet chaos
cp "$tmp/gen/raw/telemetry.chaos.parquet" "$tmp/exports/"
sentinel --workdir "$tmp/plain" --quiet recover --input "$tmp/exports" --as-of "$as_of"

# What a run's data says, as the analytics print it (run_trend lists run times; left out).
answers() {
    for q in region_failure_rank cohort_bottlenecks gateway_hotspots error_mix rollout_gate \
             state_matrix recovery_roi triage_summary; do
        sentinel --workdir "$1" analyze --query "$q" --format csv
    done
}
expected=$(answers "$tmp/plain")
fail=0
check() {
    if [ "$(answers "$2")" = "$expected" ]; then
        echo "check-sharded: $1: the merged run equals the plain recover"
    else
        echo "check-sharded: $1: the merged run differs from the plain recover" >&2
        fail=1
    fi
}

deploy/local/sharded-recover.sh "$tmp/exports" 3 2 "$tmp/local" "$as_of" 2>/dev/null
check "xargs -P (3 shards)" "$tmp/local"

FAKE_SLURM_STATE="$tmp/slurm-state" deploy/slurm/submit.sh "$tmp/exports" "$tmp/slurm" "$as_of" \
    >/dev/null 2>&1
check "Slurm array (8 shards)" "$tmp/slurm"
[ -f "$tmp/slurm/reports/$(ls "$tmp/slurm/reports")/report.html" ] \
    || { echo "check-sharded: Slurm: no report" >&2; fail=1; }

FAKE_KUBE_STATE="$tmp/kube.json" FAKE_MOUNTS="/data=$tmp/kube,/exports=$tmp/exports" \
    deploy/kubernetes/run-sharded.sh "$as_of" >/dev/null 2>&1
check "Kubernetes Indexed Job (8 shards)" "$tmp/kube"
[ -f "$tmp/kube/reports/$(ls "$tmp/kube/reports")/report.html" ] \
    || { echo "check-sharded: Kubernetes: no report" >&2; fail=1; }
exit "$fail"
