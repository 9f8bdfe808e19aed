#!/usr/bin/env bash
# The host's OpenAPI document against the host itself: starts `wxpay-host sandbox` (fresh SQLite,
# the simulator in-process), fetches /openapi.json from the private listener and runs
# schemathesis (PyPI, pinned) on every operation — the back office (tag `admin`) on the private
# listener with the admin token, the rest (`api`, `notify`, `ops`) on the public one with a
# logged-in user's token. Checks: no 5xx, status codes / content types / headers / bodies as
# documented, invalid input refused, valid input accepted.
#
#   bash scripts/test-openapi.sh            # CI form: ~100 generated cases per operation
#   ST_MAX_EXAMPLES=1000 bash scripts/test-openapi.sh   # longer run
#
# Needs target/debug/wxpay-host (default features), or WXPAY_HOST_BIN.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="${WXPAY_HOST_BIN:-target/debug/wxpay-host}"
venv="${CARGO_TARGET_DIR:-$root/target}/schemathesis-venv"
version=4.32.5
max_examples="${ST_MAX_EXAMPLES:-100}"

[ -x "$bin" ] || cargo build -p wxpay-host --bin wxpay-host
if ! [ -x "$venv/bin/schemathesis" ] || ! "$venv/bin/schemathesis" --version | grep -q "$version"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version"
fi

work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
WXPAY_LISTEN=127.0.0.1:0 WXPAY_ADMIN_LISTEN=127.0.0.1:0 \
  WXPAY_DATABASE_URL="sqlite://$work/openapi.db" RUST_LOG="${RUST_LOG:-warn}" \
  "$bin" sandbox >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 600); do
  grep -q '^  admin token:' "$work/out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/out" "$work/err"; echo "sandbox exited"; exit 1; }
  sleep 0.1
done
pick() { sed -n "s/^  $1: *\([^ ]*\).*/\1/p" "$work/out" | head -1; }
host=$(pick host); admin=$(pick admin); sim=$(pick simulator); token=$(pick 'admin token')
[ -n "$host" ] && [ -n "$admin" ] && [ -n "$sim" ] && [ -n "$token" ] || {
  cat "$work/out"; echo "cannot read the sandbox's addresses"; exit 1; }

# A logged-in user with one paid order, so that the operations on an order (refunds above all)
# also meet real data: schemathesis uses its number as the path parameter.
code=$(curl -sf -X POST "$sim/sim/login/code" -H 'content-type: application/json' \
  -d '{"openid":"o_openapi_user"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["code"])')
user=$(curl -sf -X POST "$host/api/login" -H 'content-type: application/json' \
  -d "{\"code\":\"$code\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
curl -sf -X POST "$admin/admin/orders" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' \
  -d '{"openid":"o_openapi_user","amount":100,"description":"OpenAPI","out_trade_no":"OPENAPI0001"}' \
  >/dev/null
curl -sf -X POST "$host/api/orders/OPENAPI0001/pay" -H "authorization: Bearer $user" >/dev/null
curl -sf -X POST "$sim/sim/orders/OPENAPI0001/pay" >/dev/null
for _ in $(seq 1 100); do
  curl -sf "$host/api/orders/OPENAPI0001" -H "authorization: Bearer $user" | grep -q '"PAID"' && break
  sleep 0.1
done
cat >"$work/schemathesis.toml" <<'TOML'
[parameters]
"path.out_trade_no" = "OPENAPI0001"
TOML

curl -sf "$admin/openapi.json" -o "$work/openapi.json"
if curl -s -o /dev/null -w '%{http_code}' "$host/openapi.json" | grep -qv 404; then
  echo "FAIL: /openapi.json is served on the public listener"
  exit 1
fi

# Not checked: positive_data_acceptance (rules the schema cannot state refuse schema-valid input
# with 400 — an openid that never logged in, 128 bytes of description, 1.0 as an amount) and the
# checks that need links between operations (use_after_free, ensure_resource_availability) or
# a second identity (ignored_auth is covered by the host's own tests: every route without a token
# is 401).
excluded=positive_data_acceptance,ignored_auth,use_after_free,ensure_resource_availability
run() {
  local url=$1 auth=$2
  shift 2
  # (From the scratch directory: schemathesis keeps its example database in ./.schemathesis.)
  (cd "$work" && "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$work/openapi.json" --url "$url" \
    -H "Authorization: Bearer $auth" --checks all \
    --exclude-checks "$excluded" \
    --max-examples "$max_examples" --seed 1 --workers 2 \
    --suppress-health-check all --no-color "$@")
}
echo "== schemathesis: back office (private listener)"
run "$admin" "$token" --include-tag admin
echo "== schemathesis: mini-program API, notifications, ops (public listener)"
run "$host" "$user" --include-tag api --include-tag notify --include-tag ops
