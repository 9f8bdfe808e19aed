// The npm package's known-answer vector runner, the JS twin of tests/tests/vectors.rs: every
// case of every file of a vector directory (format: tests/vectors/README.md) through the
// package, once per RSA provider. Unknown files are failures.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** `$WXPAY_VECTORS_DIR`, else the project's `tests/vectors`. */
export const vectorsDir = () => process.env.WXPAY_VECTORS_DIR ?? join(here, '..', '..', 'tests', 'vectors');

/** The project's own `tests/vectors`, whatever `$WXPAY_VECTORS_DIR` says: the fixture keys and
 * files of every test that is not the vector run itself. */
export const fixturesDir = () => join(here, '..', '..', 'tests', 'vectors');

/** `tests/fixtures/runner-contract`: req_info plaintext compared as text, parsed only for
 * `fields`; exactly the case named `wrong fields` must fail. */
export const runnerContractDir = () => join(here, '..', '..', 'tests', 'fixtures', 'runner-contract');

export const KNOWN_FILES = [
  'v2_sign', 'v2_notify', 'v2_refund_req_info', 'v3_pay_sign', 'v3_authorization',
  'v3_response', 'v3_notification', 'v3_decrypt', 'v3_certificates', 'rsa_oaep',
];

/** The `*.json` files of `dir`, sorted, as `[stem, path]`. */
export function vectorFiles(dir) {
  return readdirSync(dir).filter((f) => f.endsWith('.json')).sort()
    .map((f) => [f.slice(0, -'.json'.length), join(dir, f)]);
}

/** `"ok"` or the thrown error's `code` (which must be a real `Error` with a code). */
function outcome(fn) {
  try {
    return ['ok', fn()];
  } catch (e) {
    if (!(e instanceof Error) || typeof e.code !== 'string') {
      throw new Error(`threw a non-Error or an Error without code: ${e}`);
    }
    return [e.code, undefined];
  }
}

class Ctx {
  constructor(wx, dir, file, provider) {
    Object.assign(this, { wx, dir, file, provider });
  }

  keyPem(name) {
    const f = this.file.keys?.[name] ?? `${name}.pem`;
    return readFileSync(join(this.dir, 'keys', f), 'utf8');
  }

  signer(mchid, serial) {
    const s = new this.wx.MerchantSigner(this.keyPem('merchant_private_key'), mchid, serial,
      { provider: this.provider });
    if (s.provider !== this.provider) throw new Error(`asked for ${this.provider}, got ${s.provider}`);
    return s;
  }

  platformKeys() {
    const keys = new this.wx.PlatformKeys({ provider: this.provider });
    for (const [serial, f] of Object.entries(this.file.keys.platform_serials)) {
      const pem = readFileSync(join(this.dir, 'keys', f), 'utf8');
      if (pem.includes('BEGIN CERTIFICATE')) {
        const got = keys.addCertificate(pem);
        if (got !== serial) throw new Error(`certificate serial ${got} != ${serial}`);
      } else {
        keys.addPublicKey(serial, pem);
      }
    }
    return keys;
  }
}

const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const sorted = (o) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));

/** Runs one case; returns a description of the mismatch, or null. */
export function runCase(op, ctx, c) {
  const { wx } = ctx;
  const expected = c.expected ?? 'ok';
  let got;
  switch (op) {
    case 'v2_sign': {
      const s = wx.v2Sign(c.params, c.key, c.sign_type);
      if (s.stringToSign !== c.string_to_sign) return `stringToSign ${s.stringToSign}`;
      if (wx.v2CanonicalString(c.params) !== c.string_to_sign) return 'v2CanonicalString';
      // verify round trip, lower-case hex accepted
      wx.v2Verify({ ...c.params, sign: expected.toLowerCase() }, c.key, c.sign_type);
      got = s.sign;
      break;
    }
    case 'v2_notify': {
      const [code, fields] = outcome(() => wx.v2VerifyNotification(c.xml, c.key, c.sign_type));
      if (fields && !eq(sorted(fields), sorted(c.fields))) return `fields ${JSON.stringify(fields)}`;
      got = code;
      break;
    }
    case 'v2_refund_req_info': {
      const [code, pt] = outcome(() => wx.v2DecryptReqInfo(c.req_info, c.key));
      if (pt !== undefined) {
        if (pt !== c.plaintext) return `plaintext ${pt}`;
        // Parsed only when the case says what it parses to: a plaintext is just text.
        if (c.fields !== undefined) {
          const fields = wx.v2ParseXml(pt);
          if (!eq(sorted(fields), sorted(c.fields))) return `fields ${JSON.stringify(fields)}`;
        }
      }
      got = code;
      break;
    }
    case 'v3_pay_sign': {
      if (c.sign_type !== 'RSA') return 'sign_type';
      const signer = ctx.signer('1900009191', 'SERIAL');
      const r = signer.paySign(c.app_id, c.package.replace(/^prepay_id=/, ''),
        { timeStamp: c.time_stamp, nonceStr: c.nonce_str });
      const msg = wx.paySignMessage(r.appId, r.timeStamp, r.nonceStr, r.package);
      if (msg !== c.message || r.package !== c.package || r.signType !== 'RSA') return `message ${msg}`;
      const keys = Object.keys(r).sort().join();
      if (keys !== 'appId,nonceStr,package,paySign,signType,timeStamp') return `fields ${keys}`;
      signer.free();
      got = r.paySign;
      break;
    }
    case 'v3_authorization': {
      const signer = ctx.signer(c.mchid, c.serial_no);
      const a = signer.authorization(c.method, c.url, c.body,
        { timestamp: c.timestamp, nonceStr: c.nonce_str });
      if (a.message !== c.message || a.signature !== c.expected_signature) return `signature ${a.signature}`;
      if (a.header !== c.expected_header) return `header ${a.header}`;
      if (wx.requestMessage(c.method, c.url, c.timestamp, c.nonce_str, c.body) !== c.message) return 'requestMessage';
      signer.free();
      got = 'ok';
      break;
    }
    case 'v3_response': {
      const keys = ctx.platformKeys();
      [got] = outcome(() => keys.verifyResponse(c.headers, c.body, c.now));
      // The same through a fetch `Headers` object (lower-cased names).
      const [viaHeaders] = outcome(() => keys.verifyResponse(new Headers(c.headers), c.body, c.now));
      if (viaHeaders !== got) return `Headers object gave ${viaHeaders}`;
      keys.free();
      break;
    }
    case 'v3_notification': {
      const keys = ctx.platformKeys();
      const apiKey = new wx.ApiV3Key(c.api_v3_key ?? ctx.file.api_v3_key, { provider: ctx.provider });
      if (apiKey.provider !== ctx.provider) throw new Error(`ApiV3Key asked for ${ctx.provider}, got ${apiKey.provider}`);
      let probe = false;
      const [code, n] = outcome(() => {
        try {
          return keys.verifyNotification(apiKey, c.headers, c.body, c.now);
        } catch (e) {
          probe = e.probe === true;
          throw e;
        }
      });
      if (n) {
        if (n.plaintext !== c.resource_plaintext) return `plaintext ${n.plaintext}`;
        if (n.id !== JSON.parse(c.body).id) return `id ${n.id}`;
      }
      if (c.name.includes('probe') && !probe) return 'probe not flagged';
      keys.free();
      apiKey.free();
      got = code;
      break;
    }
    case 'v3_decrypt': {
      const [code, pt] = outcome(() => new wx.ApiV3Key(c.api_v3_key, { provider: ctx.provider })
        .decrypt(c.nonce, c.associated_data, c.ciphertext));
      if (pt !== undefined && pt !== c.plaintext) return `plaintext ${pt}`;
      got = code;
      break;
    }
    case 'v3_certificates': {
      const [code, certs] = outcome(() => new wx.ApiV3Key(c.api_v3_key, { provider: ctx.provider }).decryptCertificates(c.body));
      if (certs) {
        if (certs.length !== c.certificates.length) return `${certs.length} certificates`;
        for (const [i, cert] of certs.entries()) {
          const want = c.certificates[i];
          if (cert.serialNo !== want.serial_no || cert.pem !== want.pem) return `certificate ${cert.serialNo}`;
          const k = new wx.PlatformKeys({ provider: ctx.provider });
          if (k.addCertificate(cert.pem) !== want.serial_no) return 'downloaded certificate unusable';
          k.free();
        }
      }
      got = code;
      break;
    }
    case 'rsa_oaep': {
      const signer = ctx.signer('1900009191', 'SERIAL');
      const [code, pt] = outcome(() => signer.decryptOaep(c.ciphertext));
      if (pt !== undefined && pt !== c.plaintext) return `plaintext ${pt}`;
      if (typeof c.plaintext === 'string') {
        const pub = new wx.PublicKey(ctx.keyPem('merchant_public_key'), { provider: ctx.provider });
        const ct = pub.encryptOaep(c.plaintext);
        if (signer.decryptOaep(ct) !== c.plaintext) return 'OAEP round trip';
        pub.free();
      }
      signer.free();
      got = code;
      break;
    }
    default:
      return `no runner for ${op}`;
  }
  return got === expected ? null : `got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`;
}

/** Runs every file of `dir` through `providers`: `{ counts: {stem: runs}, failures: [] }`. */
export function runDir(wx, dir, providers) {
  const counts = {};
  const failures = [];
  const files = vectorFiles(dir);
  if (files.length === 0) failures.push(`no vector files in ${dir}`);
  for (const [stem, path] of files) {
    if (!KNOWN_FILES.includes(stem)) {
      failures.push(`unknown vector file ${path}`);
      continue;
    }
    const file = JSON.parse(readFileSync(path, 'utf8'));
    counts[stem] = 0;
    for (const provider of providers) {
      const ctx = new Ctx(wx, dir, file, provider);
      for (const c of file.cases) {
        counts[stem] += 1;
        let err;
        try {
          err = runCase(stem, ctx, c);
        } catch (e) {
          err = `threw ${e?.code ?? ''} ${e?.message ?? e}`;
        }
        if (err) failures.push(`${stem} / ${c.name} / ${provider}: ${err}`);
      }
    }
  }
  return { counts, failures };
}
