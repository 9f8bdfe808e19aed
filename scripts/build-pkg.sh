#!/usr/bin/env bash
# Builds the npm package `wxpay-wasm` (pkg/) and the universal C-ABI .wasm from source, on a fresh
# machine or again (idempotent: every step is skipped or cheap when already done).
#
#   1. the wasm32-unknown-unknown target (rustup)
#   2. wasm-bindgen-cli pinned to the exact version of the `wasm-bindgen` crate in Cargo.lock
#      (`cargo install` without --locked; skipped when that version is installed)
#   3. npm ci in pkg/ (committed package-lock.json; brings binaryen's wasm-opt, workerd, tsc)
#   4. wxpay-wasm for wasm32, release with opt-level "z", LTO, one codegen unit, panic=abort
#   5. wasm-bindgen glue for Node (CommonJS) and the web (ES module + explicit init) into
#      pkg/dist/{node,web}/ (git-ignored; the crate's JS snippets under snippets/, rewritten to
#      CommonJS for Node), then wasm-opt -Oz on each .wasm
#   6. the C-ABI build (--no-default-features --features c-abi, its own cargo invocation and
#      target dir so that no JS randomness backend is linked) to $WXPAY_CABI_WASM (default
#      $CARGO_TARGET_DIR/wxpay-cabi.wasm), also wasm-opt'ed
#
# Environment: CARGO_TARGET_DIR (default <repo>/target), SKIP_CABI=1 to skip step 6.
set -euo pipefail
# Release builds for wasm32: not linted here (test-all.sh lints the workspace's native builds by
# wrapping rustc in clippy-driver; that wrapper must not leak into these builds).
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TARGET_DIR="$target_dir"
pkg="$root/pkg"
log() { printf '\n== build-pkg: %s\n' "$*" >&2; }

# 1. target
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# 2. wasm-bindgen-cli = the wasm-bindgen crate version (the glue and the crate must match).
# (`|| true`: with an out-of-date lock file `--locked` fails, and `set -e` must not end here.)
want="$(cargo metadata --format-version 1 --locked 2>/dev/null \
  | grep -o '"name":"wasm-bindgen","version":"[^"]*"' | head -1 | sed 's/.*"version":"//; s/"$//' || true)"
if [ -z "$want" ]; then
  # No lock entry yet (first build after adding the crate): take the pin from Cargo.toml.
  want="$(grep -E '^wasm-bindgen *=' Cargo.toml | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1)"
fi
have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$have" != "$want" ]; then
  log "installing wasm-bindgen-cli $want (found: ${have:-none})"
  cargo install wasm-bindgen-cli --version "$want"
fi

# 3. npm dependencies from the committed lock file.
if [ ! -d "$pkg/node_modules" ] || [ "$pkg/package-lock.json" -nt "$pkg/node_modules/.package-lock.json" ]; then
  log "npm ci"
  (cd "$pkg" && npm ci --no-audit --no-fund)
fi
wasm_opt="$pkg/node_modules/.bin/wasm-opt"

# 4. + 6. The release profile is tuned for size here, by environment, so the workspace's
# native release builds keep their own settings.
size_profile=(
  env
  CARGO_PROFILE_RELEASE_OPT_LEVEL=z
  CARGO_PROFILE_RELEASE_LTO=true
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
  CARGO_PROFILE_RELEASE_PANIC=abort
  CARGO_PROFILE_RELEASE_DEBUG=false
)
# The workspace asks for opt-level 3 on the core (native speed); for the .wasm size comes first.
# The digest crates are the exception: md-5 and sha2 at opt-level 3 are both faster and smaller
# in the .wasm than at "z" (measured: v2Sign MD5 7.3 -> 6.3 us per call in Node 20, the module
# 199,713 -> 198,806 B gzip -9).
size_config=(
  --config 'profile.release.package.wxpay-core.opt-level="z"'
  --config 'profile.release.package.md-5.opt-level=3'
  --config 'profile.release.package.sha2.opt-level=3'
)
log "cargo build wxpay-wasm (js) for wasm32"
"${size_profile[@]}" cargo build "${size_config[@]}" -p wxpay-wasm --release \
  --target wasm32-unknown-unknown
js_wasm="$target_dir/wasm32-unknown-unknown/release/wxpay_wasm.wasm"

# 5. glue + wasm-opt, skipped when the cargo output is unchanged since the last run.
opt() {
  # -Oz, keeping exactly the features rustc's wasm32 target emits by default.
  "$wasm_opt" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue "$1" -o "$1.opt"
  mv "$1.opt" "$1"
}
stamp="$(sha256sum "$js_wasm" | cut -d' ' -f1) $(wasm-bindgen --version)"
if [ "$(cat "$pkg/dist/.stamp" 2>/dev/null)" != "$stamp" ] \
  || [ ! -f "$pkg/dist/node/wxpay_wasm_bg.wasm" ] || [ ! -f "$pkg/dist/web/wxpay_wasm_bg.wasm" ]; then
  for t in node web; do
    target="$t"
    [ "$t" = node ] && target=nodejs
    log "wasm-bindgen --target $target + wasm-opt -Oz"
    rm -rf "$pkg/dist/$t"
    wasm-bindgen --target "$target" --out-dir "$pkg/dist/$t" --out-name wxpay_wasm \
      --no-typescript "$js_wasm"
    if [ "$t" = node ]; then
      # The glue is CommonJS for Node but `require`s the crate's JS snippets (wasm/src/js/
      # glue.js) as they are written, ES modules, which Node 20 cannot `require`: rewrite them
      # to CommonJS (they use nothing but top-level `export function`).
      find "$pkg/dist/node/snippets" -name '*.js' -print0 | xargs -0 -r -n1 node -e '
        const fs = require("node:fs");
        const f = process.argv[1];
        const names = [];
        const src = fs.readFileSync(f, "utf8").replace(/^export function (\w+)/gm, (_, n) => {
          names.push(n);
          return `function ${n}`;
        });
        if (/^\s*(export|import)\b/m.test(src)) {
          console.error(`${f}: only top-level "export function" can be rewritten to CommonJS`);
          process.exit(1);
        }
        fs.writeFileSync(f, `"use strict";\n${src}\nmodule.exports = { ${names.join(", ")} };\n`);'
    fi
    opt "$pkg/dist/$t/wxpay_wasm_bg.wasm"
  done
  echo "$stamp" >"$pkg/dist/.stamp"
else
  log "pkg/dist is up to date"
fi

# 6. universal C-ABI module, in its own target dir: the same crate with other features would
# otherwise overwrite (and rebuild) the JS artifact on every run.
if [ "${SKIP_CABI:-0}" != 1 ]; then
  log "cargo build wxpay-wasm (c-abi) for wasm32"
  # The function table is exported and growable so that a host may append its own crypto
  # functions (optional; see wasm/src/c_abi/host.rs and wasm/README.md).
  "${size_profile[@]}" RUSTFLAGS="-C link-arg=--export-table -C link-arg=--growable-table" \
    cargo build "${size_config[@]}" -p wxpay-wasm --release \
    --target wasm32-unknown-unknown --no-default-features --features c-abi \
    --target-dir "$target_dir/cabi"
  cabi_raw="$target_dir/cabi/wasm32-unknown-unknown/release/wxpay_wasm.wasm"
  cabi="${WXPAY_CABI_WASM:-$target_dir/wxpay-cabi.wasm}"
  if [ ! -f "$cabi" ] || [ "$cabi_raw" -nt "$cabi" ]; then
    cp "$cabi_raw" "$cabi.tmp"
    opt "$cabi.tmp"
    mv "$cabi.tmp" "$cabi"
  fi
  log "C-ABI module: $cabi ($(wc -c <"$cabi") bytes)"
fi

for f in "$pkg/dist/node/wxpay_wasm_bg.wasm" "$pkg/dist/web/wxpay_wasm_bg.wasm"; do
  log "$(basename "$(dirname "$f")") .wasm: $(wc -c <"$f") bytes raw, $(gzip -9c "$f" | wc -c) bytes gzip -9"
done
