#!/usr/bin/env bash
# The sample mini-program's test (host/miniprogram/test): its real pages driven in Node with a
# `wx` stand-in against a `wxpay-host sandbox` child process. Builds the host binary first
# (cargo does nothing if it is current) unless WXPAY_HOST_BIN names one.
# WXPAY_MINIPROGRAM_MODES=v3,v2 selects the host modes (default v3; see the test file).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ -z "${WXPAY_HOST_BIN:-}" ]; then
  cargo build -p wxpay-host --bin wxpay-host
  export WXPAY_HOST_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/wxpay-host"
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "test-miniprogram: Node 20 or newer is needed (found $(node --version))" >&2
  exit 1
fi
# The files named explicitly: Node 20 would also run the helper modules in test/ as test files.
node --test host/miniprogram/test/*.test.mjs
