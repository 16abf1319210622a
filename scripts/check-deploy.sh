#!/usr/bin/env bash
# Validates the schedule files in deploy/ with the checkers Debian and PyPI offer:
#   systemd units   systemd-analyze verify (inside a scratch root that holds the job script)
#   Kubernetes      kubernetes-validate --strict (the API schemas, offline) and yamllint
#   cron            croniter parses the schedule; the line has the /etc/cron.d fields
#   shell           sh -n / bash -n on the nightly script and the scale-out scripts
#                   (scripts/check-sharded.sh runs the scale-out ones end to end)
# Installs the Python checkers with pip when they are missing. Any warning is a failure.
# Usage: scripts/check-deploy.sh        (about 10 s once the checkers are installed)
set -euo pipefail
cd "$(dirname "$0")/.."

need_pip=()
command -v kubernetes-validate >/dev/null || need_pip+=(kubernetes-validate)
command -v yamllint >/dev/null || need_pip+=(yamllint)
python3 -c 'import croniter' 2>/dev/null || need_pip+=(croniter)
if [ ${#need_pip[@]} -gt 0 ]; then
    python3 -m pip install --quiet --disable-pip-version-check "${need_pip[@]}"
fi

fail=0
report() { echo "check-deploy: $*" >&2; fail=1; }

# systemd: verify needs the units' world (sysinit.target and friends) and ExecStart's program,
# so it runs in a scratch root holding the host's stock units, our units and the job script.
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/usr/lib/systemd" "$root/etc/systemd/system"
cp -r /lib/systemd/system "$root/usr/lib/systemd/"
install -m 0755 deploy/cron/sentinel-nightly "$root/usr/local/bin/sentinel-nightly"
cp deploy/systemd/sentinel.service deploy/systemd/sentinel.timer "$root/etc/systemd/system/"
out=$(systemd-analyze verify --man=no --root="$root" \
    /etc/systemd/system/sentinel.service /etc/systemd/system/sentinel.timer 2>&1) \
    || report "systemd-analyze verify failed: $out"
[ -z "$out" ] || report "systemd-analyze verify: $out"

# Kubernetes.
kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml || report "kubernetes-validate failed"
yamllint -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable}}' \
    deploy/kubernetes || report "yamllint failed"

# cron: every job line has five schedule fields, a user, a command; the schedule parses.
python3 - deploy/cron/sentinel.cron <<'PY' || report "cron file invalid"
import sys
from croniter import croniter
jobs = 0
for n, line in enumerate(open(sys.argv[1]), 1):
    line = line.strip()
    if not line or line.startswith("#") or "=" in line.split()[0]:
        continue
    fields = line.split(None, 6)
    if len(fields) < 7:
        sys.exit(f"line {n}: expected 5 schedule fields, a user and a command")
    if not croniter.is_valid(" ".join(fields[:5])):
        sys.exit(f"line {n}: invalid schedule {' '.join(fields[:5])!r}")
    if "%" in fields[6]:
        sys.exit(f"line {n}: an unescaped % ends a cron command")
    jobs += 1
if jobs == 0:
    sys.exit("no job line")
PY

sh -n deploy/cron/sentinel-nightly || report "deploy/cron/sentinel-nightly: shell syntax"
for script in deploy/local/*.sh deploy/kubernetes/*.sh deploy/slurm/*.sh; do
    sh -n "$script" || report "$script: shell syntax"
done
for script in deploy/slurm/*.sbatch; do
    bash -n "$script" || report "$script: shell syntax"
done

if [ "$fail" -ne 0 ]; then
    exit 1
fi
echo "check-deploy: systemd units, Kubernetes manifests, cron file and scripts are valid"
