#!/usr/bin/env bash
# Builds the runtime image from the Dockerfile on a local Debian base and checks it, without any
# image registry:
#   1. a Debian bookworm root filesystem from Debian's packages (mmdebstrap), imported as the
#      base image (podman import);
#   2. the binary built on the host (cargo build --release), wrapped by the Dockerfile's runtime
#      stage (`--target prebuilt`, RUNTIME_IMAGE = that base), with buildah;
#   3. the image's configuration (entrypoint, default command, user, work directory, labels);
#   4. inside the image, as the non-root user and with a mounted work directory: `sentinel
#      --help`, `sentinel-nightly`'s shell, and `sentinel run --fail-on-halt`, whose exit code 3
#      (the default fleet halts ap-south) must pass through; then the report and the database
#      it wrote are checked from the host.
# Needs root, buildah, podman and mmdebstrap (apt-get install buildah podman mmdebstrap); builds
# and runs with --isolation chroot and the vfs storage driver, which work inside containers too.
# Usage: scripts/container-check.sh     (README, "Container image", says how long it takes)
set -euo pipefail
cd "$(dirname "$0")/.."
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
base=localhost/sentinel-base:bookworm
image=localhost/sentinel:check
work=$(mktemp -d)
ctr=""
cleanup() {
    [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
step() { echo "container-check: $*"; }

step "building the binary on the host"
cargo build --release --locked --bin sentinel
bin="${CARGO_TARGET_DIR:-target}/release/sentinel"

if ! podman image exists "$base" 2>/dev/null; then
    step "making the Debian base with mmdebstrap"
    mmdebstrap --quiet --variant=minbase --include=libstdc++6 bookworm "$work/base.tar"
    podman import "$work/base.tar" "$base" >/dev/null
fi

step "building $image from the Dockerfile (--target prebuilt)"
ctx="$work/context"
mkdir -p "$ctx/dist" "$ctx/deploy/cron"
cp Dockerfile .dockerignore "$ctx/"
cp deploy/cron/sentinel-nightly "$ctx/deploy/cron/"
cp "$bin" "$ctx/dist/sentinel"
buildah bud --quiet --layers=false --target prebuilt \
    --build-arg RUNTIME_IMAGE="$base" --build-arg RUST_IMAGE="$base" \
    -t "$image" "$ctx" >/dev/null

step "checking the image's configuration"
buildah inspect --type image "$image" > "$work/inspect.json"
python3 - "$work/inspect.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["OCIv1"]["config"]
want = {"Entrypoint": ["sentinel"], "Cmd": ["run"], "User": "10001:10001", "WorkingDir": "/data"}
for k, v in want.items():
    assert c.get(k) == v, f"{k}: {c.get(k)!r}, expected {v!r}"
assert "SENTINEL_WORKDIR=/data" in c.get("Env", []), c.get("Env")
assert "/data" in c.get("Volumes", {}), c.get("Volumes")
labels = c.get("Labels", {})
for k in ("org.opencontainers.image.title", "org.opencontainers.image.version",
          "org.opencontainers.image.licenses"):
    assert labels.get(k), f"label {k} missing"
PY

step "running sentinel in the image as uid 10001 with a mounted work directory"
data="$work/data"
mkdir -p "$data"
chown 10001:10001 "$data"
ctr=$(buildah from --quiet "$image")
# `buildah run` puts an anonymous volume over a declared VOLUME even when a bind mount is given
# for it (docker and podman do not); the working container forgets the declaration so that the
# host folder is what /data is, as `docker run -v host:/data` makes it.
buildah config --volume /data- "$ctr"
run() { buildah run --user 10001:10001 --volume "$data:/data" "$ctr" -- "$@"; }
help=$(run sentinel --help)
grep -q "Exit codes" <<<"$help" || { echo "sentinel --help failed: $help" >&2; exit 1; }
[ "$(run id -u)" = 10001 ] || { echo "not running as uid 10001" >&2; exit 1; }
set +e
run sentinel --quiet run --as-of 2026-11-25T12:00:00Z --fail-on-halt
code=$?
set -e
[ "$code" -eq 3 ] || { echo "run --fail-on-halt exited $code, expected 3 (HALT)" >&2; exit 1; }

step "checking the work directory from the host"
report=$(ls -d "$data"/reports/*/ | head -n 1)
for f in report.html report.md summary.json failure_heatmap.png failure_heatmap.svg; do
    [ -s "$report/$f" ] || { echo "missing $report$f" >&2; exit 1; }
done
[ "$(stat -c %u "$data/sentinel.duckdb")" = 10001 ] || { echo "database not owned by uid 10001" >&2; exit 1; }
gate=$("$bin" --workdir "$data" analyze --query rollout_gate --format csv)
grep -q '^ap-south,.*,HALT$' <<<"$gate" || { echo "ap-south is not HALT: $gate" >&2; exit 1; }
grep -q '"decision": *"HALT"\|HALT' "$report/summary.json" || { echo "summary.json lacks HALT" >&2; exit 1; }
step "passed: image $image runs as uid 10001, exit code 3 passes through, report and database written"
