#!/usr/bin/env bash
# Times the whole pipeline as separate processes at one fleet size and prints, per stage, the wall
# time, rows (or devices) per second and peak resident memory (from /usr/bin/time -v).
#
#   benches/pipeline.sh DEVICES [RUNS] [WORKDIR]
#
# DEVICES: fleet size (about 1.13 reports per device, plus 5% chaos). RUNS (default 3): repetitions;
# the median of each stage is printed. WORKDIR (default /tmp/sentinel-bench-DEVICES) is removed
# first. Needs the release binary (cargo build --release) and GNU time (apt-get install time).
set -euo pipefail
devices="${1:?usage: benches/pipeline.sh DEVICES [RUNS] [WORKDIR]}"
runs="${2:-3}"
work="${3:-/tmp/sentinel-bench-$devices}"
target="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}"
bin="$target/release/sentinel"
as_of="2026-11-25T12:00:00Z"
[ -x "$bin" ] || { echo "build first: cargo build --release ($bin missing)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time is missing: apt-get install time" >&2; exit 1; }

# Runs a command under GNU time; prints "seconds peak_kb". Its stdout goes to $work.out.
measure() {
    local log
    log="$(mktemp)"
    /usr/bin/time -v "$@" >"$work.out" 2>"$log" || { cat "$log" >&2; exit 1; }
    local wall peak
    wall="$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log" | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')"
    peak="$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")"
    rm -f "$log"
    echo "$wall $peak"
}

declare -A times peaks
for run in $(seq "$runs"); do
    rm -rf "$work"
    w=(--workdir "$work" --quiet)
    read -r t p < <(measure "$bin" "${w[@]}" --json generate --devices "$devices" --as-of "$as_of")
    times[generate]+="$t "; peaks[generate]+="$p "
    raw_rows="$(sed -n 's/.*"rows":\([0-9]*\).*/\1/p' "$work.out")"
    read -r t p < <(measure "$bin" "${w[@]}" chaos)
    times[chaos]+="$t "; peaks[chaos]+="$p "
    read -r t p < <(measure "$bin" "${w[@]}" --json recover --input "$work/raw/telemetry.chaos.parquet" --as-of "$as_of")
    times[recover]+="$t "; peaks[recover]+="$p "
    chaos_rows="$(sed -n 's/.*"rows_in":\([0-9]*\).*/\1/p' "$work.out")"
    read -r t p < <(measure "$bin" "${w[@]}" analyze)
    times[analyze]+="$t "; peaks[analyze]+="$p "
    read -r t p < <(measure "$bin" "${w[@]}" report)
    times[report]+="$t "; peaks[report]+="$p "
done

rm -f "$work.out"
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
printf '%-9s %10s %14s %12s   (%s devices, %s rows into recover, median of %s runs)\n' \
    stage seconds "per second" "peak RSS" "$devices" "$chaos_rows" "$runs"
for stage in generate chaos recover analyze report; do
    t="$(echo "${times[$stage]}" | median)"
    p="$(echo "${peaks[$stage]}" | median)"
    case "$stage" in
        generate) n="$devices"; unit="devices" ;;
        analyze|report) n=""; unit="" ;;
        chaos) n="$raw_rows"; unit="rows" ;;
        recover) n="$chaos_rows"; unit="rows" ;;
    esac
    if [ -n "$n" ]; then
        rate="$(awk -v n="$n" -v t="$t" 'BEGIN { printf "%.0f ", n / (t > 0 ? t : 1e-9) }')$unit"
    else
        rate="-"
    fi
    printf '%-9s %10.2f %14s %9.0f MB\n' "$stage" "$t" "$rate" "$(awk -v p="$p" 'BEGIN { print p / 1024 }')"
done
