#!/usr/bin/env bash
# The Python binding (wasm/python, `wxpay` over the universal C-ABI .wasm with wasmtime from
# PyPI): a venv in $CARGO_TARGET_DIR/py-venv with wasm/python/requirements.txt, then pytest —
# every vector case plus the API tests. Needs the module from scripts/build-pkg.sh
# ($WXPAY_CABI_WASM). Called by scripts/test-all.sh.
#
# pytest exit code 5 ("no tests collected") is a failure here, with its own message: the tests
# are generated from the vector files, so collecting none means the suite is broken, not green.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export WXPAY_CABI_WASM="${WXPAY_CABI_WASM:-$CARGO_TARGET_DIR/wxpay-cabi.wasm}"
venv="$CARGO_TARGET_DIR/py-venv"
req="$root/wasm/python/requirements.txt"

python="$(command -v python3 || true)"
if [ -z "$python" ]; then
  echo "test-python: python3 is required" >&2
  exit 1
fi
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1 && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi
# (Re)create the venv when missing or when the requirements changed.
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
  echo "== test-python: venv + pip install -r wasm/python/requirements.txt" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  cp "$req" "$venv/requirements.txt"
fi

if [ ! -f "$WXPAY_CABI_WASM" ]; then
  echo "test-python: $WXPAY_CABI_WASM missing; run scripts/build-pkg.sh first" >&2
  exit 1
fi

echo "== test-python: pytest wasm/python" >&2
set +e
(cd "$root/wasm/python" && "$venv/bin/python" -m pytest -q)
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test-python: pytest collected no tests (exit 5): the suite is broken" >&2
  exit 1
fi
exit "$rc"
