#!/bin/sh
# Sharded recover on one host: partition the inputs by device, recover the shards PARALLEL at a
# time with xargs -P, then merge them into the work directory's database as one run.
#
#   deploy/local/sharded-recover.sh INPUT SHARDS PARALLEL [WORKDIR] [AS_OF]
#
# INPUT: a telemetry file or folder. SHARDS: how many shards. PARALLEL: shards at once (each gets
# nproc / PARALLEL threads, at least 1). WORKDIR: default sentinel-out. AS_OF: RFC 3339, default
# now; every shard measures from it. SENTINEL names the binary (default: sentinel on PATH).
# A failed shard fails the whole script before merge; re-running it re-does only what is needed
# (partition is quick to repeat; a shard re-run replaces its own folder).
set -eu
input=${1:?usage: sharded-recover.sh INPUT SHARDS PARALLEL [WORKDIR] [AS_OF]}
shards=${2:?usage: sharded-recover.sh INPUT SHARDS PARALLEL [WORKDIR] [AS_OF]}
parallel=${3:?usage: sharded-recover.sh INPUT SHARDS PARALLEL [WORKDIR] [AS_OF]}
workdir=${4:-sentinel-out}
as_of=${5:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}
sentinel=${SENTINEL:-sentinel}
threads=$(( $(nproc) / parallel ))
[ "$threads" -ge 1 ] || threads=1

"$sentinel" --workdir "$workdir" --quiet partition --input "$input" --shards "$shards" --as-of "$as_of"
seq 0 $((shards - 1)) | xargs -P "$parallel" -I '{}' \
    "$sentinel" --workdir "$workdir" --threads "$threads" --quiet \
    recover --input "$workdir/partition" --shard "{}/$shards"
"$sentinel" --workdir "$workdir" merge
