"""WeChat Pay signing, verification and decryption for Python, over the universal ``.wasm``.

The module is ``wxpay-cabi``'s C ABI (documented in ``wasm/README.md``) run by ``wasmtime`` from
PyPI: the same core, byte for byte, as the Rust host and the npm package. Keys are parsed once
into handles; errors are :class:`WxpayError` with the project's ``code``.

>>> wx = Wxpay.load()                                           # doctest: +SKIP
>>> signer = wx.merchant_signer(pem, "1900009191", serial_no)   # doctest: +SKIP
>>> signer.pay_sign("wxd678efh567hg6787", prepay_id)            # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import wasmtime

__all__ = ["Wxpay", "WxpayError", "MerchantSigner", "PlatformKeys", "default_module_path"]


class WxpayError(Exception):
    """An error of the core: ``code`` is one of ``signature_mismatch``, ``unknown_serial``,
    ``timestamp_expired``, ``malformed``, ``decrypt_failed``, ``invalid_key``; ``probe`` is true
    for a rejected ``WECHATPAY/SIGNTEST/`` probe."""

    def __init__(self, code: str, message: str, probe: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.probe = probe


def default_module_path() -> Path:
    """``$WXPAY_CABI_WASM``, else ``$CARGO_TARGET_DIR/wxpay-cabi.wasm``, else the repository's
    ``target/wxpay-cabi.wasm`` (where ``scripts/build-pkg.sh`` writes it)."""
    if os.environ.get("WXPAY_CABI_WASM"):
        return Path(os.environ["WXPAY_CABI_WASM"])
    root = Path(__file__).resolve().parents[3]
    target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    return target / "wxpay-cabi.wasm"


class Wxpay:
    """One instance of the module: a ``wasmtime`` store, its memory and the three exports."""

    def __init__(self, module_path: str | os.PathLike[str]) -> None:
        engine = wasmtime.Engine()
        module = wasmtime.Module.from_file(engine, str(module_path))
        self._store = wasmtime.Store(engine)
        linker = wasmtime.Linker(engine)

        def random_get(caller: wasmtime.Caller, ptr: int, length: int) -> int:
            # The module's only import: the OS CSPRNG (RSA blinding, OAEP, nonces).
            memory = caller["memory"]
            assert isinstance(memory, wasmtime.Memory)
            memory.write(caller, secrets.token_bytes(length), ptr)
            return 0

        i32 = wasmtime.ValType.i32()
        linker.define_func(
            "wxpay_host", "random_get", wasmtime.FuncType([i32, i32], [i32]), random_get,
            access_caller=True,
        )
        instance = linker.instantiate(self._store, module)
        exports = instance.exports(self._store)
        self._exports = exports
        self._memory = exports["memory"]
        self._alloc = exports["wxpay_alloc"]
        self._free = exports["wxpay_free"]
        self._call = exports["wxpay_call"]

    def use_host_crypto(self) -> None:
        """Signs RSA and decrypts AES-256-GCM with the ``cryptography`` package (OpenSSL) instead
        of the module's pure-Rust code: its functions are appended to the module's function table
        and installed with ``host_crypto.install`` (``wasm/src/c_abi/host.rs``). Keys created
        afterwards with ``provider="host"`` sign at OpenSSL's speed; the bytes are the same."""
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        memory, keys = self._memory, {}
        i32 = wasmtime.ValType.i32()

        def read(caller, ptr: int, n: int) -> bytes:
            return bytes(memory.read(caller, ptr, ptr + n))

        def rsa_key(caller, ptr, n):
            try:
                key = serialization.load_der_private_key(read(caller, ptr, n), password=None)
            except ValueError:
                return -1
            handle = len(keys) + 1
            keys[handle] = key
            return handle

        def rsa_sign(caller, handle, mp, ml, op, cap):
            key = keys.get(handle)
            if key is None:
                return -1
            sig = key.sign(read(caller, mp, ml), padding.PKCS1v15(), hashes.SHA256())
            if len(sig) > cap:
                return -1
            memory.write(caller, sig, op)
            return len(sig)

        def rsa_key_free(caller, handle):
            keys.pop(handle, None)

        def aes(caller, kp, np, ap, al, cp, cl, op):
            try:
                pt = AESGCM(read(caller, kp, 32)).decrypt(read(caller, np, 12), read(caller, cp, cl),
                                                          read(caller, ap, al))
            except Exception:  # InvalidTag: a wrong key, nonce, AAD or ciphertext
                return -1
            memory.write(caller, pt, op)
            return len(pt)

        table = self._exports["__indirect_function_table"]
        slots = {}
        for name, fn, params, results in [
            ("rsa_key", rsa_key, 2, [i32]), ("rsa_sign", rsa_sign, 5, [i32]),
            ("rsa_key_free", rsa_key_free, 1, []), ("aes_256_gcm_decrypt", aes, 7, [i32]),
        ]:
            func = wasmtime.Func(self._store, wasmtime.FuncType([i32] * params, results), fn,
                                 access_caller=True)
            slots[name] = table.grow(self._store, 1, func)
        self.call("host_crypto.install", **slots)

    @classmethod
    def load(cls, module_path: str | os.PathLike[str] | None = None) -> "Wxpay":
        """Loads the module from ``module_path`` or :func:`default_module_path`."""
        return cls(module_path or default_module_path())

    def call(self, op: str, **args: Any) -> Any:
        """Runs one operation of the C ABI; returns its ``ok`` value or raises
        :class:`WxpayError`."""
        request = json.dumps({"op": op, **args}).encode()
        ptr = self._alloc(self._store, len(request)) & 0xFFFFFFFF
        self._memory.write(self._store, request, ptr)
        packed = self._call(self._store, ptr, len(request)) & 0xFFFFFFFFFFFFFFFF
        self._free(self._store, ptr, len(request))
        out_ptr, out_len = packed >> 32, packed & 0xFFFFFFFF
        response = json.loads(bytes(self._memory.read(self._store, out_ptr, out_ptr + out_len)))
        self._free(self._store, out_ptr, out_len)
        if "error" in response:
            e = response["error"]
            raise WxpayError(e["code"], e["message"], bool(e.get("probe")))
        return response["ok"]

    # Keys ------------------------------------------------------------------------------------

    def merchant_signer(self, pem: str, mchid: str, serial_no: str,
                        provider: str = "rust") -> "MerchantSigner":
        """Parses ``apiclient_key.pem`` (PKCS#8 or PKCS#1) once; ``provider="host"`` signs with
        the host's functions (:meth:`use_host_crypto`)."""
        return MerchantSigner(self, self.call("merchant_signer.new", pem=pem, mchid=mchid,
                                              serial_no=serial_no, provider=provider),
                              mchid, serial_no)

    def platform_keys(self) -> "PlatformKeys":
        """An empty set of WeChat Pay platform keys (certificates and ``PUB_KEY_ID_…``)."""
        return PlatformKeys(self, self.call("platform_keys.new"))

    # Stateless operations --------------------------------------------------------------------

    def nonce_str(self) -> str:
        """32 characters ``[0-9A-Za-z]``."""
        return self.call("nonce_str")

    def v2_sign(self, params: Mapping[str, str], key: str, sign_type: str = "MD5") -> dict:
        """``{string_to_sign, sign}``."""
        return self.call("v2.sign", params=dict(params), key=key, sign_type=sign_type)

    def v2_verify_notification(self, xml: str, key: str, sign_type: str = "MD5") -> dict:
        """The verified fields of an APIv2 XML notification; ``sign_type`` is the order's (a
        notification may upgrade it to HMAC-SHA256, never downgrade it)."""
        return self.call("v2.verify_notification", xml=xml, key=key, sign_type=sign_type)

    def v3_decrypt(self, api_v3_key: str, nonce: str, associated_data: str, ciphertext: str) -> str:
        """AEAD_AES_256_GCM resource decryption."""
        return self.call("v3.decrypt", api_v3_key=api_v3_key, nonce=nonce,
                         associated_data=associated_data, ciphertext=ciphertext)


def _now(now: int | None) -> int:
    return int(time.time()) if now is None else now


def _headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {k: v for k, v in pairs}


class MerchantSigner:
    """The merchant's signing key (a handle in the module)."""

    def __init__(self, wx: Wxpay, handle: int, mchid: str, serial_no: str) -> None:
        self._wx, self.handle, self.mchid, self.serial_no = wx, handle, mchid, serial_no

    def sign(self, message: str) -> str:
        """SHA256withRSA, base64."""
        return self._wx.call("merchant_signer.sign", handle=self.handle, message=message)

    def authorization(self, method: str, url: str, body: str = "", *, timestamp: str | None = None,
                      nonce_str: str | None = None) -> dict:
        """``{message, signature, header}`` for an APIv3 request (``url`` = path and query)."""
        return self._wx.call(
            "v3.authorization", handle=self.handle, method=method, url=url, body=body,
            timestamp=timestamp or str(_now(None)), nonce_str=nonce_str or self._wx.nonce_str())

    def pay_sign(self, app_id: str, prepay_id: str, *, time_stamp: str | None = None,
                 nonce_str: str | None = None) -> dict:
        """The ``wx.requestPayment`` object ``{appId, timeStamp, nonceStr, package, signType,
        paySign}``."""
        r = self._wx.call(
            "v3.pay_sign", handle=self.handle, app_id=app_id, prepay_id=prepay_id,
            time_stamp=time_stamp or str(_now(None)), nonce_str=nonce_str or self._wx.nonce_str())
        return r["request_payment"]

    def decrypt_oaep(self, ciphertext: str) -> str:
        """RSA-OAEP (SHA-1) decryption of a sensitive field."""
        return self._wx.call("merchant_signer.decrypt_oaep", handle=self.handle,
                             ciphertext=ciphertext)

    def free(self) -> None:
        """Releases the key in the module."""
        self._wx.call("handle.free", handle=self.handle)


class PlatformKeys:
    """WeChat Pay platform keys by serial (a handle in the module)."""

    def __init__(self, wx: Wxpay, handle: int) -> None:
        self._wx, self.handle = wx, handle

    def add_certificate(self, pem: str) -> str:
        """Adds a platform certificate; returns its serial."""
        return self._wx.call("platform_keys.add_certificate", handle=self.handle, pem=pem)

    def add_public_key(self, key_id: str, pem: str) -> None:
        """Adds a WeChat Pay public key under its ``PUB_KEY_ID_…``."""
        self._wx.call("platform_keys.add_public_key", handle=self.handle, key_id=key_id, pem=pem)

    def serials(self) -> list[str]:
        """The serials held."""
        return self._wx.call("platform_keys.serials", handle=self.handle)

    def verify_response(self, headers: Mapping[str, str], body: str, now: int | None = None) -> None:
        """Verifies an APIv3 response on the body exactly as received."""
        self._wx.call("v3.verify_response", handle=self.handle, headers=_headers(headers),
                      body=body, now=_now(now))

    def verify_notification(self, api_v3_key: str, headers: Mapping[str, str], body: str,
                            now: int | None = None) -> dict:
        """Verifies an APIv3 notification on the raw body and decrypts it: ``{id, event_type,
        …, plaintext}`` (``plaintext`` is JSON text)."""
        return self._wx.call("v3.verify_notification", handle=self.handle, api_v3_key=api_v3_key,
                             headers=_headers(headers), body=body, now=_now(now))

    def verify_certificates_response(self, api_v3_key: str, headers: Mapping[str, str], body: str,
                                     now: int | None = None, add: bool = False) -> list[dict]:
        """Verifies and decrypts ``GET /v3/certificates`` (first download included)."""
        return self._wx.call("v3.verify_certificates_response", handle=self.handle,
                             api_v3_key=api_v3_key, headers=_headers(headers), body=body,
                             now=_now(now), add=add)

    def free(self) -> None:
        """Releases the keys in the module."""
        self._wx.call("handle.free", handle=self.handle)
