#!/usr/bin/env bash
# Builds the npm package and the C-ABI module from source (scripts/build-pkg.sh), then runs
# `npm test` in pkg/ (every vector through both RSA providers, require/import, README examples,
# the web build in workerd, tsc on the declarations) and the wasmtime test of the C-ABI .wasm.
# Called by .ci/run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export WXPAY_CABI_WASM="${WXPAY_CABI_WASM:-$CARGO_TARGET_DIR/wxpay-cabi.wasm}"

bash "$root/scripts/build-pkg.sh"

echo "== test-pkg: npm test" >&2
(cd "$root/pkg" && npm test)

cd "$root"
echo "== test-pkg: C-ABI dispatch unit tests (native)" >&2
cargo test -p wxpay-wasm --features c-abi

echo "== test-pkg: wasmtime (C-ABI module $WXPAY_CABI_WASM)" >&2
# (--workspace, not -p wxpay-tests: the same feature resolution as the workspace's own build, so
# wasmtime is not compiled a second time.)
cargo test --workspace --test wasmtime -- --nocapture
