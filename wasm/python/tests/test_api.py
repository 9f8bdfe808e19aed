"""The Python API beyond the vectors: sign a request and a paySign, verify a fresh
notification, certificate bootstrap, no v2 sign-type downgrade, typed errors."""

import base64
import json
import time

import pytest

from runner import fixtures_dir
from wxpay import WxpayError

KEYS = fixtures_dir() / "keys"
API_V3_KEY = "abababababababababababababababab"


@pytest.fixture(scope="module")
def signer(wx):
    return wx.merchant_signer((KEYS / "merchant_private_key.pem").read_text(), "1900009191",
                              "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C")


def test_authorization_and_pay_sign(wx, signer):
    a = signer.authorization("POST", "/v3/pay/transactions/jsapi", '{"a":1}')
    assert a["header"].startswith('WECHATPAY2-SHA256-RSA2048 mchid="1900009191",nonce_str="')
    p = signer.pay_sign("wxd678efh567hg6787", "wx201410272009395522657a690389285100")
    assert p["signType"] == "RSA" and p["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert abs(int(p["timeStamp"]) - time.time()) < 5 and len(p["nonceStr"]) == 32
    # The signature verifies under the merchant public key (as a public-key-mode key here).
    k = wx.platform_keys()
    k.add_public_key("M", (KEYS / "merchant_public_key.pem").read_text())
    msg = f"{p['appId']}\n{p['timeStamp']}\n{p['nonceStr']}\n{p['package']}\n"
    wx.call("platform_keys.verify", handle=k.handle, serial="M", message=msg, signature=p["paySign"])
    with pytest.raises(WxpayError) as e:
        wx.call("platform_keys.verify", handle=k.handle, serial="M", message=msg + "x",
                signature=p["paySign"])
    assert e.value.code == "signature_mismatch"


def test_verify_a_fresh_notification(wx):
    # Signed like WeChat Pay with the test platform key, through the module itself.
    platform = wx.merchant_signer((KEYS / "platform_private_key.pem").read_text(), "x", "p")
    keys = wx.platform_keys()
    serial = keys.add_certificate((KEYS / "platform_cert.pem").read_text())
    ct = wx.call("v3.encrypt", api_v3_key=API_V3_KEY, nonce="aZ3bC4dE5fG6",
                 associated_data="transaction", plaintext=json.dumps({"out_trade_no": "o-1"}))
    body = json.dumps({"id": "EV-1", "event_type": "TRANSACTION.SUCCESS", "resource": {
        "algorithm": "AEAD_AES_256_GCM", "ciphertext": ct, "associated_data": "transaction",
        "nonce": "aZ3bC4dE5fG6"}})
    ts, nonce = str(int(time.time())), wx.nonce_str()
    sig = platform.sign(f"{ts}\n{nonce}\n{body}\n")
    headers = {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": sig,
               "Wechatpay-Serial": serial}
    n = keys.verify_notification(API_V3_KEY, headers, body)
    assert json.loads(n["plaintext"]) == {"out_trade_no": "o-1"}
    for bad, code in [(body.replace("EV-1", "EV-2"), "signature_mismatch")]:
        with pytest.raises(WxpayError) as e:
            keys.verify_notification(API_V3_KEY, headers, bad)
        assert e.value.code == code
    probe = {**headers, "Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + base64.b64encode(b"x").decode()}
    with pytest.raises(WxpayError) as e:
        keys.verify_notification(API_V3_KEY, probe, body)
    assert e.value.code == "signature_mismatch" and e.value.probe
    with pytest.raises(WxpayError) as e:
        keys.verify_notification(API_V3_KEY, headers, body, now=int(ts) + 301)
    assert e.value.code == "timestamp_expired"


def test_certificate_bootstrap(wx):
    case = json.loads((fixtures_dir() / "v3_certificates.json").read_text())["cases"][0]
    serial = case["certificates"][0]["serial_no"]
    platform = wx.merchant_signer((KEYS / "platform_private_key.pem").read_text(), "x", serial)
    ts = str(int(time.time()))
    headers = {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": "n",
               "Wechatpay-Signature": platform.sign(f"{ts}\nn\n{case['body']}\n"),
               "Wechatpay-Serial": serial}
    keys = wx.platform_keys()
    certs = keys.verify_certificates_response(case["api_v3_key"], headers, case["body"], add=True)
    assert [c["serial_no"] for c in certs] == [serial] and keys.serials() == [serial]


def test_v2_no_downgrade_and_carriage_returns(wx):
    key = "192006250b4c09247ec02edce69f6a2d"
    md5 = wx.call("v2.signed_xml", params={"appid": "wx1", "body": "a\rb", "sign_type": "MD5"},
                  key=key, sign_type="MD5")
    assert wx.v2_verify_notification(md5, key, "MD5")["body"] == "a\rb"
    with pytest.raises(WxpayError) as e:
        wx.v2_verify_notification(md5, key, "HMAC-SHA256")
    assert e.value.code == "signature_mismatch"


def test_garbage_is_an_error_not_a_trap(wx):
    with pytest.raises(WxpayError) as e:
        wx.call("no.such.op")
    assert e.value.code == "malformed"


def test_host_supplied_crypto_signs_the_same_bytes_faster():
    # A fresh instance: installing host crypto is per instance.
    from wxpay import Wxpay

    wx = Wxpay.load()
    wx.use_host_crypto()
    pem = (KEYS / "merchant_private_key.pem").read_text()
    host = wx.merchant_signer(pem, "1", "S", provider="host")
    rust = wx.merchant_signer(pem, "1", "S")

    def rate(signer, n):
        t = time.perf_counter()
        for i in range(n):
            sig = signer.sign(f"m{i % 2}")
        return sig, n / (time.perf_counter() - t)

    (a, host_rate), (b, rust_rate) = rate(host, 200), rate(rust, 4)
    assert a == b
    print(f"C-ABI sign/s from Python: host (OpenSSL) {host_rate:.0f}, pure wasm {rust_rate:.1f}")
    case = json.loads((fixtures_dir() / "v3_decrypt.json").read_text())["cases"]
    for c in case:
        try:
            got = wx.v3_decrypt(c["api_v3_key"], c["nonce"], c["associated_data"], c["ciphertext"])
            assert c["expected"] == "ok" and got == c["plaintext"], c["name"]
        except WxpayError as e:
            assert e.code == c["expected"], c["name"]
