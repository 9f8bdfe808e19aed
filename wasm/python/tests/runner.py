"""The vector runner of the Python binding: the twin of ``tests/tests/wasmtime.rs`` and
``pkg/test/vector-runner.mjs`` (format: ``tests/vectors/README.md``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from wxpay import Wxpay, WxpayError

REPO = Path(__file__).resolve().parents[3]
KNOWN_FILES = [
    "v2_sign", "v2_notify", "v2_refund_req_info", "v3_pay_sign", "v3_authorization",
    "v3_response", "v3_notification", "v3_decrypt", "v3_certificates", "rsa_oaep",
]


def vectors_dir() -> Path:
    """``$WXPAY_VECTORS_DIR``, else the project's ``tests/vectors``."""
    return Path(os.environ.get("WXPAY_VECTORS_DIR", REPO / "tests" / "vectors"))


def fixtures_dir() -> Path:
    """The project's own ``tests/vectors``, whatever ``$WXPAY_VECTORS_DIR`` says."""
    return REPO / "tests" / "vectors"


def vector_files(d: Path) -> list[tuple[str, Path]]:
    return sorted((p.stem, p) for p in d.glob("*.json"))


def outcome(fn) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except WxpayError as e:
        return e.code, None


class Ctx:
    def __init__(self, wx: Wxpay, d: Path, file: dict) -> None:
        self.wx, self.dir, self.file = wx, d, file

    def key_pem(self, name: str) -> str:
        f = self.file.get("keys", {}).get(name, f"{name}.pem")
        return (self.dir / "keys" / f).read_text()

    def signer(self, mchid: str, serial: str):
        return self.wx.merchant_signer(self.key_pem("merchant_private_key"), mchid, serial)

    def platform_keys(self):
        keys = self.wx.platform_keys()
        for serial, f in self.file["keys"]["platform_serials"].items():
            pem = (self.dir / "keys" / f).read_text()
            if "BEGIN CERTIFICATE" in pem:
                got = keys.add_certificate(pem)
                if got != serial:
                    raise AssertionError(f"certificate serial {got} != {serial}")
            else:
                keys.add_public_key(serial, pem)
        return keys


def run_case(op: str, ctx: Ctx, c: dict) -> str | None:
    """Runs one case; returns a description of the mismatch, or None."""
    wx = ctx.wx
    expected = c.get("expected", "ok")
    if op == "v2_sign":
        s = wx.v2_sign(c["params"], c["key"], c["sign_type"])
        if s["string_to_sign"] != c["string_to_sign"]:
            return f"string_to_sign {s['string_to_sign']!r}"
        wx.call("v2.verify", params={**c["params"], "sign": expected.lower()}, key=c["key"],
                sign_type=c["sign_type"])
        got = s["sign"]
    elif op == "v2_notify":
        got, fields = outcome(lambda: wx.v2_verify_notification(c["xml"], c["key"], c["sign_type"]))
        if fields is not None and fields != c["fields"]:
            return f"fields {fields}"
    elif op == "v2_refund_req_info":
        got, pt = outcome(lambda: wx.call("v2.decrypt_req_info", req_info=c["req_info"], key=c["key"]))
        if pt is not None:
            if pt != c["plaintext"]:
                return f"plaintext {pt!r}"
            # Parsed only when the case says what it parses to: a plaintext is just text.
            if "fields" in c:
                fields = wx.call("v2.parse_xml", xml=pt)
                if fields != c["fields"]:
                    return f"fields {fields}"
    elif op == "v3_pay_sign":
        signer = ctx.signer("1900009191", "SERIAL")
        prepay = c["package"].removeprefix("prepay_id=")
        r = signer.pay_sign(c["app_id"], prepay, time_stamp=c["time_stamp"], nonce_str=c["nonce_str"])
        signer.free()
        if r["package"] != c["package"] or r["signType"] != "RSA":
            return f"request_payment {r}"
        msg = f"{r['appId']}\n{r['timeStamp']}\n{r['nonceStr']}\n{r['package']}\n"
        if msg != c["message"]:
            return f"message {msg!r}"
        got = r["paySign"]
    elif op == "v3_authorization":
        signer = ctx.signer(c["mchid"], c["serial_no"])
        a = signer.authorization(c["method"], c["url"], c["body"], timestamp=c["timestamp"],
                                 nonce_str=c["nonce_str"])
        signer.free()
        if a["message"] != c["message"] or a["signature"] != c["expected_signature"]:
            return f"signature {a['signature']}"
        if a["header"] != c["expected_header"]:
            return f"header {a['header']}"
        got = "ok"
    elif op in ("v3_response", "v3_notification"):
        keys = ctx.platform_keys()
        if op == "v3_response":
            got, _ = outcome(lambda: keys.verify_response(c["headers"], c["body"], c["now"]))
        else:
            key = c.get("api_v3_key", ctx.file.get("api_v3_key"))
            probe = False

            def run():
                nonlocal probe
                try:
                    return keys.verify_notification(key, c["headers"], c["body"], c["now"])
                except WxpayError as e:
                    probe = e.probe
                    raise

            got, n = outcome(run)
            if n is not None and n["plaintext"] != c["resource_plaintext"]:
                return f"plaintext {n['plaintext']!r}"
            if "probe" in c["name"] and not probe:
                return "probe not flagged"
        keys.free()
    elif op == "v3_decrypt":
        got, pt = outcome(lambda: wx.v3_decrypt(c["api_v3_key"], c["nonce"], c["associated_data"],
                                                c["ciphertext"]))
        if pt is not None and pt != c["plaintext"]:
            return f"plaintext {pt!r}"
    elif op == "v3_certificates":
        got, certs = outcome(lambda: wx.call("v3.decrypt_certificates", api_v3_key=c["api_v3_key"],
                                             body=c["body"]))
        if certs is not None:
            want = c["certificates"]
            if [(x["serial_no"], x["pem"]) for x in certs] != [(x["serial_no"], x["pem"]) for x in want]:
                return f"certificates {[x['serial_no'] for x in certs]}"
    elif op == "rsa_oaep":
        signer = ctx.signer("1900009191", "SERIAL")
        got, pt = outcome(lambda: signer.decrypt_oaep(c["ciphertext"]))
        if pt is not None and pt != c.get("plaintext"):
            return f"plaintext {pt!r}"
        if isinstance(c.get("plaintext"), str):
            k = wx.platform_keys()
            k.add_public_key("MERCHANT", ctx.key_pem("merchant_public_key"))
            ct = wx.call("platform_keys.encrypt_oaep", handle=k.handle, serial="MERCHANT",
                         plaintext=c["plaintext"])
            if signer.decrypt_oaep(ct) != c["plaintext"]:
                return "OAEP round trip"
            k.free()
        signer.free()
    else:
        return f"no runner for {op}"
    return None if got == expected else f"got {got!r}, expected {expected!r}"


def run_dir(wx: Wxpay, d: Path) -> tuple[int, list[str]]:
    """Runs every file of ``d``: (runs, failures). Unknown files are failures."""
    failures: list[str] = []
    total = 0
    files = vector_files(d)
    if not files:
        failures.append(f"no vector files in {d}")
    for stem, path in files:
        if stem not in KNOWN_FILES:
            failures.append(f"unknown vector file {path}")
            continue
        file = json.loads(path.read_text())
        ctx = Ctx(wx, d, file)
        for c in file["cases"]:
            total += 1
            try:
                err = run_case(stem, ctx, c)
            except WxpayError as e:
                err = f"raised {e}"
            if err:
                failures.append(f"{stem} / {c['name']}: {err}")
    return total, failures
