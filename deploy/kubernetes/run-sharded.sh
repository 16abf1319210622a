#!/bin/sh
# Runs a sharded recover on Kubernetes: the Indexed Job of sharded-recover.yaml with one as-of
# for every shard, then, once all shards succeeded, the merge Job of sharded-merge.yaml.
#
#   deploy/kubernetes/run-sharded.sh [AS_OF]      (AS_OF: RFC 3339, default now)
#
# Needs kubectl with a context on the cluster. Jobs of an earlier run are deleted first.
set -eu
here=$(dirname "$0")
as_of=${1:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}
kubectl delete job sentinel-shards sentinel-merge --ignore-not-found
sed "s/SET-BY-run-sharded.sh/$as_of/" "$here/sharded-recover.yaml" | kubectl apply -f -
kubectl wait --for=condition=complete --timeout=4h job/sentinel-shards
kubectl apply -f "$here/sharded-merge.yaml"
kubectl wait --for=condition=complete --timeout=1h job/sentinel-merge
