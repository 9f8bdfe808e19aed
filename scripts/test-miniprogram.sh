#!/usr/bin/env bash
# The sample mini-program's test (host/miniprogram/test): its real pages driven in Node with a
# `wx` stand-in against a `wxpay-host sandbox` child process. Builds the host binary first
# (cargo does nothing if it is current) unless WXPAY_HOST_BIN names one.
# Every test runs against a sandbox per host mode: v3 (APIv3, RSA), v2 (`sandbox --v2`, MD5)
# and v2-hmac (`sandbox --v2 --hmac-sha256`); WXPAY_MINIPROGRAM_MODES=v3,v2 picks some (default
# all three; see the test file). The v2 simulator is reached over HTTPS with its test CA.
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
