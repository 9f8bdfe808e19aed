#!/usr/bin/env python3
"""Summarise `cargo bench -p wxpay-core --features aws-lc` as ops/s and ratios to OpenSSL.

Reads target/criterion/*/*/new/estimates.json (mean) from the last run; every ratio compares
two numbers of that same run.
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
ops = {}
for est in root.glob("*/*/new/estimates.json"):
    group, name = est.parts[-4], est.parts[-3]
    ns = json.loads(est.read_text())["mean"]["point_estimate"]
    ops[f"{group}/{name}"] = 1e9 / ns
for est in root.glob("*/new/estimates.json"):
    name = est.parts[-3]
    ns = json.loads(est.read_text())["mean"]["point_estimate"]
    ops[name] = 1e9 / ns

baseline = {
    "pay_sign": "openssl/rsa_sign",
    "authorization": "openssl/rsa_sign",
    "response_verify": "openssl/rsa_verify",
    "notification_verify_decrypt": "openssl/rsa_verify",
    "v2_md5_sign": "openssl/md5",
}
print("| benchmark | ops/s | ratio to OpenSSL primitive |")
print("| --- | ---: | ---: |")
for k in sorted(ops):
    op = k.split("/", 1)[-1]
    base = baseline.get(op)
    ratio = f"{ops[k] / ops[base]:.2f}x {base}" if base in ops and not k.startswith("openssl") else ""
    print(f"| {k} | {ops[k]:,.0f} | {ratio} |")
