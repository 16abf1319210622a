#!/bin/sh
# Submits a sharded recover to Slurm: the shard array, then the merge, which starts only once
# every array task succeeded (--dependency=afterok).
#
#   deploy/slurm/submit.sh INPUT WORKDIR [AS_OF]      (AS_OF: RFC 3339, default now)
#
# WORKDIR must be on a file system every node mounts. The shard count is the array's size in
# sentinel-shards.sbatch (override with: SHARDS=16 deploy/slurm/submit.sh ...).
set -eu
here=$(dirname "$0")
input=${1:?usage: submit.sh INPUT WORKDIR [AS_OF]}
workdir=${2:?usage: submit.sh INPUT WORKDIR [AS_OF]}
as_of=${3:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}
array=""
if [ -n "${SHARDS:-}" ]; then
    array="--array=0-$((SHARDS - 1))"
fi
export AS_OF="$as_of" SENTINEL_INPUT="$input" SENTINEL_WORKDIR="$workdir"
# shellcheck disable=SC2086 # $array is empty or one option
shards=$(sbatch --parsable --export=ALL $array "$here/sentinel-shards.sbatch")
sbatch --parsable --export=ALL --dependency="afterok:${shards%%;*}" "$here/sentinel-merge.sbatch"
