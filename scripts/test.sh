#!/usr/bin/env bash
# Runs belfry's whole test suite, installing what the tests need when it is missing:
# redis-server, redis-sentinel, chromium and openssl (Debian packages) and a virtualenv with celery[redis],
# grpcio-tools, the manifest validators and Playwright (PyPI; it drives the system's Chromium, no browser
# is downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The tests start their own servers on free ports; the packaged services are not needed.
as_root systemctl disable --now redis-server redis-sentinel >/dev/null 2>&1 || true

venv="${BELFRY_VENV:-$PWD/.venv}"
if ! "$venv/bin/python" -c 'import celery, redis, grpc_tools, ephem' >/dev/null 2>&1; then
  echo "==> creating $venv with celery[redis] and grpcio-tools"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    -r tests/celery_app/requirements.txt -r examples/python/requirements.txt
fi
export BELFRY_TEST_PYTHON="$venv/bin/python"
# The belfry Python package (python/) with the exporters' test requirements, installed when
# missing or when the checkout's package sources or proto/ differ from what was installed.
digest=$(cat proto/belfry/v1/*.proto python/setup.py python/pyproject.toml \
  $(LC_ALL=C find python/src/belfry -path python/src/belfry/v1 -prune -o -name '*.py' -print | LC_ALL=C sort) \
  | sha256sum | cut -d' ' -f1)
if ! "$venv/bin/python" -c 'import belfry.client, django_celery_beat, redbeat, pytest' >/dev/null 2>&1 \
  || [ "$(cat "$venv/.belfry-python-digest" 2>/dev/null)" != "$digest" ]; then
  echo "==> installing the belfry Python package and its test requirements into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r python/tests/requirements.txt
  "$venv/bin/pip" install -q --disable-pip-version-check --no-build-isolation --force-reinstall \
    --no-deps ./python
  echo "$digest" > "$venv/.belfry-python-digest"
fi
# The console's browser tests: Playwright (pointed at the system's Chromium) and redis-py.
if ! "$venv/bin/python" -c 'import playwright.sync_api, pytest, redis' >/dev/null 2>&1; then
  echo "==> installing the browser tests' requirements into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/browser/requirements.txt
fi

echo "==> deployment manifests"
scripts/check-deploy.sh "$venv"
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked --all-targets -- "$@"
echo "==> Python package and exporters (pytest)"
BELFRY_BIN="$PWD/target/debug/belfry" "$venv/bin/python" -m pytest -q python/tests
echo "==> web console in headless Chromium (pytest + Playwright)"
BELFRY_BIN="$PWD/target/debug/belfry" BELFRY_CHROMIUM="$(command -v chromium)" \
  "$venv/bin/python" -m pytest -q tests/browser
# The fault-injection harness against a real cluster: fixed seeds, the main nemeses.
echo "==> chaos harness (short run)"
chaos/ci.sh
