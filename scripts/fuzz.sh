#!/usr/bin/env bash
# Runs every cargo-fuzz target of wxpay-core (core/fuzz/) for SECONDS each, after seeding the
# corpora from tests/vectors/*.json. Prints executions and crashes per target; exits non-zero
# if any target crashed (reproducers land in core/fuzz/artifacts/<target>/).
#
#   bash scripts/fuzz.sh 900 10000000   # the long run: 10^7 executions per target (or 900 s)
#   bash scripts/fuzz.sh 600            # 600 s per target
#   bash scripts/fuzz.sh 3              # the CI smoke (test-all.sh, when cargo-fuzz is installed)
#
# Needs a nightly toolchain; installs cargo-fuzz when missing. The targets are built once
# (`cargo fuzz build`) and the binaries run directly, so SECONDS is fuzzing time, not build time.
# FUZZ_SANITIZER (default `none`): the core is `#![forbid(unsafe_code)]` over pure-Rust crypto, so
# AddressSanitizer finds little there and costs ~2x the executions; set it to `address` to use it.
set -euo pipefail

secs="${1:-60}"
# Optional: stop a target after this many executions (libFuzzer -runs) if that comes first.
runs="${2:--1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
fuzz="$root/core/fuzz"
cd "$fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Seeds: each vector case's relevant fields, joined with the 0xFF separator the targets split on
# (fuzz_targets/common/mod.rs). Regenerated every run; corpus/ is not committed.
python3 - "$root/tests/vectors" "$fuzz/corpus" <<'PY'
import hashlib, json, os, sys
vec, out = sys.argv[1], sys.argv[2]
SEP = b"\xff"
def load(name):
    with open(os.path.join(vec, name), encoding="utf-8") as f:
        return json.load(f)
def b(s): return s.encode("utf-8") if isinstance(s, str) else s
def put(target, *fields):
    data = SEP.join(b(f) for f in fields)
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)
def header_lines(h): return "\n".join(f"{k}: {v}" for k, v in h.items())
keys = os.path.join(vec, "keys")
for c in load("v2_notify.json")["cases"]:
    put("v2_parse_xml", c["xml"])
    for mode in (b"\x00", b"\x01", b"\x02", b"\x03"):
        put("v2_verify_notification", mode + b(c["xml"]))
for c in load("v2_refund_req_info.json")["cases"]:
    put("v2_decrypt_req_info", c["req_info"])
    if c.get("plaintext"):
        put("v2_parse_xml", c["plaintext"])
for name, target in (("v3_notification.json", "v3_verify_notification"),
                     ("v3_response.json", "v3_verify_response")):
    for c in load(name)["cases"]:
        put(target, str(c["now"]), header_lines(c["headers"]), c["body"])
        if c.get("resource_plaintext"):
            put("v3_verify_notification", str(c["now"]), "", c["resource_plaintext"])
for c in load("v3_decrypt.json")["cases"]:
    put("aead_decrypt", c["api_v3_key"], c["nonce"], c["associated_data"], c["ciphertext"])
for c in load("v3_certificates.json")["cases"]:
    put("v3_certificates", "", "", c["body"])
for f in sorted(os.listdir(keys)):
    with open(os.path.join(keys, f), "rb") as fh:
        put("pem_keys", fh.read())
# open data: WeChat's documented sample (session key, encryptedData, iv).
put("open_data", "tiihtNczf5v6AKRyjwEUhQ==",
    "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==",
    "r7BXXKkLb8qrSNn05n0qiA==")
PY
echo "corpus (seeds + what earlier runs found): $(du -sh corpus | cut -f1) in $(find corpus -type f | wc -l) files"

targets=$(cargo +nightly fuzz list)
cargo +nightly fuzz build -O --sanitizer "${FUZZ_SANITIZER:-none}" 2>&1 | grep -E '^(error|warning: unused)|Finished' || true
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bindir="$fuzz/target/$triple/release"

status=0
summary=""
for t in $targets; do
  mkdir -p "artifacts/$t" "corpus/$t"
  log="$(mktemp)"
  start=$(date +%s)
  set +e
  "$bindir/$t" "corpus/$t" -max_total_time="$secs" -runs="$runs" -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  crashes=$(find "artifacts/$t" -name 'crash-*' -newermt "@$start" 2>/dev/null | wc -l)
  if [ "$rc" -ne 0 ]; then
    status=1
    [ "$crashes" -eq 0 ] && crashes="rc=$rc"
    echo "--- $t failed; last lines of its log:"
    tail -40 "$log"
  fi
  line=$(printf '%-26s %14s executions in %4s s  %s crashes' "$t" "${execs:-?}" \
    "$(($(date +%s) - start))" "$crashes")
  echo "$line"
  summary+="$line"$'\n'
  rm -f "$log"
done
echo
echo "fuzz summary (at most ${secs} s per target$([ "$runs" -gt 0 ] && echo ", at most $runs executions")):"
printf '%s' "$summary"
exit "$status"
