// Conversions that are cheaper on the JS side of the boundary (wasm-bindgen snippet, shipped
// with both builds). Conversions only: no protocol logic and no cryptography. Each function
// either converts exactly as the Rust side would or answers `undefined`, and the Rust side
// then takes its general path.
//
// Strings cross the boundary as one string plus the UTF-16 lengths of its parts: one text
// encoding or decoding per call instead of one per field.

/** The `Wechatpay-*` header names, lower case and WeChat's spelling. */
const HEADERS = [
  ['wechatpay-timestamp', 'Wechatpay-Timestamp'],
  ['wechatpay-nonce', 'Wechatpay-Nonce'],
  ['wechatpay-signature', 'Wechatpay-Signature'],
  ['wechatpay-serial', 'Wechatpay-Serial'],
  ['wechatpay-signature-type', 'Wechatpay-Signature-Type'],
];

/**
 * The five `Wechatpay-*` values of a plain headers object (Node's `req.headers`, a literal),
 * concatenated; `lens[i]` receives the UTF-16 length of value `i`, or `-1` for an absent
 * optional signature type. `undefined` for anything else (`Headers`, `Map`, pairs, a name in
 * both spellings, a missing header, a value that is not a string or an array of strings): the
 * general path decides, with its errors.
 */
export function wechatpayHeaders(h, lens) {
  if (h === null || typeof h !== 'object' || Array.isArray(h)
    || typeof h[Symbol.iterator] === 'function') {
    return undefined;
  }
  let out = '';
  for (let i = 0; i < 5; i++) {
    const a = h[HEADERS[i][0]];
    const b = h[HEADERS[i][1]];
    if (a !== undefined && b !== undefined) return undefined;
    let v = a === undefined ? b : a;
    if (v === undefined) {
      if (i < 4) return undefined;
      lens[i] = -1;
      continue;
    }
    // A repeated header in Node's `IncomingHttpHeaders`: joined like fetch's `Headers`.
    if (Array.isArray(v)) {
      if (!v.every((x) => typeof x === 'string')) return undefined;
      v = v.join(', ');
    }
    if (typeof v !== 'string') return undefined;
    lens[i] = v.length;
    out += v;
  }
  return out;
}

/**
 * Every header of `h` (a plain object, `Headers`, `Map` or iterable of `[name, value]` pairs)
 * as `L;n1v1n2v2…`, where `L` lists the UTF-16 lengths (`,`-separated). A value that is an
 * array (a repeated header in Node's `IncomingHttpHeaders`) is joined with `, ` like fetch's
 * `Headers`; an `undefined` value of a plain object is left out. `undefined` for any other
 * shape.
 */
export function headerPairs(h) {
  if (h === null || typeof h !== 'object') return undefined;
  const plain = typeof h[Symbol.iterator] !== 'function';
  const entries = plain ? Object.entries(h) : Array.from(h);
  const parts = [];
  for (const e of entries) {
    if (!Array.isArray(e)) return undefined;
    const name = e[0];
    let value = e[1];
    if (plain && value === undefined) continue;
    if (Array.isArray(value)) value = value.join(', ');
    if (typeof name !== 'string' || typeof value !== 'string') return undefined;
    parts.push(name, value);
  }
  return joined(parts);
}

/**
 * v2 parameters as `L;k1v1k2v2…` (see `headerPairs`), their values as `JSON.stringify` writes
 * them: strings, safe integers and booleans as text; `null`, `undefined` and `NaN` left out.
 * `undefined` when `params` is not an object or a value is anything else (a fraction, an
 * unsafe integer, an object) or not well-formed UTF-16.
 */
export function flatParams(params) {
  if (params === null || typeof params !== 'object' || Array.isArray(params)) return undefined;
  const parts = flatten(params);
  if (parts !== null) return joined(parts);
  // Values with `toJSON`, functions, symbols…: exactly what JSON would carry.
  let plain;
  try {
    plain = JSON.parse(JSON.stringify(params));
  } catch {
    return undefined; // a cycle or a BigInt
  }
  const again = flatten(plain);
  return again === null ? undefined : joined(again);
}

/** `[k1, v1, k2, v2, …]` for an object of strings, safe integers, booleans and empty values;
 * `null` for anything else. */
function flatten(params) {
  const parts = [];
  for (const k of Object.keys(params)) {
    let v = params[k];
    switch (typeof v) {
      case 'string':
        break;
      case 'number':
        if (Number.isNaN(v)) continue; // JSON: null
        if (!Number.isSafeInteger(v)) return null;
        v = String(v);
        break;
      case 'boolean':
        v = String(v);
        break;
      case 'undefined':
        continue;
      default:
        if (v === null) continue;
        return null;
    }
    parts.push(k, v);
  }
  return parts;
}

/** `L;p1p2…` with `L` the UTF-16 lengths of the parts; `undefined` unless well-formed. */
function joined(parts) {
  const all = parts.join('');
  if (typeof all.isWellFormed === 'function' && !all.isWellFormed()) return undefined;
  return `${parts.map((p) => p.length).join(',')};${all}`;
}

/** Splits `all` at the UTF-16 lengths `lens` (a `Uint32Array` view on wasm memory). */
function split(all, lens) {
  const parts = new Array(lens.length);
  let at = 0;
  for (let i = 0; i < lens.length; i++) {
    parts[i] = all.slice(at, at + lens[i]);
    at += lens[i];
  }
  return parts;
}

/** `{ id, createTime, eventType, resourceType, summary, resource: { originalType, algorithm,
 * ciphertext, associatedData, nonce }, plaintext }` from its eleven strings, in that order. */
export function notificationObject(all, lens) {
  const p = split(all, lens);
  return {
    id: p[0],
    createTime: p[1],
    eventType: p[2],
    resourceType: p[3],
    summary: p[4],
    resource: {
      originalType: p[5],
      algorithm: p[6],
      ciphertext: p[7],
      associatedData: p[8],
      nonce: p[9],
    },
    plaintext: p[10],
  };
}

/** `{ stringToSign, sign }`. */
export function signedObject(all, lens) {
  const p = split(all, lens);
  return { stringToSign: p[0], sign: p[1] };
}

/** `{ message, signature, header }`. */
export function authorizationObject(all, lens) {
  const p = split(all, lens);
  return { message: p[0], signature: p[1], header: p[2] };
}

/** The `wx.requestPayment` object `{ appId, timeStamp, nonceStr, package, signType, paySign }`. */
export function paymentObject(all, lens) {
  const p = split(all, lens);
  return { appId: p[0], timeStamp: p[1], nonceStr: p[2], package: p[3], signType: p[4], paySign: p[5] };
}

/** An object of strings from alternating keys and values. */
export function mapObject(all, lens) {
  const p = split(all, lens);
  const obj = {};
  for (let i = 0; i + 1 < p.length; i += 2) obj[p[i]] = p[i + 1];
  return obj;
}
