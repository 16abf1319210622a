#!/usr/bin/env bash
# Times a sharded recover as separate processes: partition, every shard (PARALLEL at a time,
# each with nproc / PARALLEL threads), merge; prints wall time and peak RSS of each, and the
# projection to one shard per node from the per-shard figures.
#
#   benches/sharded.sh INPUT SHARDS PARALLEL [WORKDIR]
#
# WORKDIR (default /tmp/sentinel-sharded) is removed first. Needs the release binary and GNU time.
set -euo pipefail
input="${1:?usage: benches/sharded.sh INPUT SHARDS PARALLEL [WORKDIR]}"
shards="${2:?usage}"
parallel="${3:?usage}"
work="${4:-/tmp/sentinel-sharded}"
target="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}"
bin="${SENTINEL:-$target/release/sentinel}"
as_of="2026-11-25T12:00:00Z"
threads=$(( $(nproc) / parallel )); [ "$threads" -ge 1 ] || threads=1
[ -x /usr/bin/time ] || { echo "GNU time is missing: apt-get install time" >&2; exit 1; }
rm -rf "$work"; mkdir -p "$work"
logs="$work.logs"; rm -rf "$logs"; mkdir -p "$logs"

start=$(date +%s.%N)
/usr/bin/time -f "%e %M" -o "$logs/partition" \
    "$bin" --workdir "$work" --quiet partition --input "$input" --shards "$shards" --as-of "$as_of"
after_partition=$(date +%s.%N)
seq 0 $((shards - 1)) | xargs -P "$parallel" -I '{}' \
    /usr/bin/time -f "%e %M" -o "$logs/shard-{}" \
    "$bin" --workdir "$work" --threads "$threads" --quiet \
    recover --input "$work/partition" --shard "{}/$shards"
after_shards=$(date +%s.%N)
/usr/bin/time -f "%e %M" -o "$logs/merge" "$bin" --workdir "$work" --quiet --json merge >"$logs/merge.json"
end=$(date +%s.%N)

rows=$(sed -n 's/.*"rows_in":\([0-9]*\).*/\1/p' "$logs/merge.json")
printf '%-10s %10s %12s\n' step seconds "peak RSS"
read -r t m < "$logs/partition"; printf '%-10s %10s %9s MB\n' partition "$t" $((m / 1024))
max_t=0; sum_t=0
for k in $(seq 0 $((shards - 1))); do
    read -r t m < "$logs/shard-$k"
    printf '%-10s %10s %9s MB\n' "shard $k" "$t" $((m / 1024))
    sum_t=$(echo "$sum_t + $t" | bc); max_t=$(echo "if ($t > $max_t) $t else $max_t" | bc)
done
read -r t m < "$logs/merge"; printf '%-10s %10s %9s MB\n' merge "$t" $((m / 1024))
merge_t=$t
read -r part_t _ < "$logs/partition"
echo
echo "rows: $rows; shards: $shards, $parallel at a time with $threads threads each"
echo "wall: partition $(echo "$after_partition - $start" | bc) s, shards $(echo "$after_shards - $after_partition" | bc) s, merge $(echo "$end - $after_shards" | bc) s, total $(echo "$end - $start" | bc) s"
echo "shard seconds: sum $sum_t, slowest $max_t"
echo "projection, one shard per node (the partition on one node, then the slowest shard, then merge):"
echo "  $shards nodes: $(echo "$part_t + $max_t + $merge_t" | bc) s"
