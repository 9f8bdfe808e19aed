// The mini-program's side of the wxpay host API: log in, read an order, get the
// wx.requestPayment parameters, confirm a payment. Every call goes to config.apiBase.
//
// The host owns everything that matters: it creates and prices orders (its back office does),
// signs the payment parameters and decides the order state. The mini-program only relays: it
// never builds, changes or signs payment parameters, and never trusts wx.requestPayment's
// answer for the order state (it asks the host).

const config = require('./config.js');

const SESSION_KEY = 'wxpay.session';

// Order states the host reports; all but CREATED are settled as far as paying is concerned.
const SETTLED_STATES = ['PAID', 'CLOSED', 'REFUNDING', 'REFUNDED', 'REVIEW'];

// An error from the host (status and its {"error":{"code","message"}}) or the network
// (status 0, code "network").
class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }

  // Worth trying again later: the network, the host or WeChat busy.
  get transient() {
    return this.status === 0 || this.status === 429 || this.status === 502 || this.status === 503;
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// wx.request as a promise of {statusCode, data}; rejects with ApiError only when no answer came.
function request(path, options) {
  const opts = options || {};
  return new Promise((resolve, reject) => {
    wx.request({
      url: config.apiBase + path,
      method: opts.method || 'GET',
      data: opts.data,
      header: Object.assign({ 'content-type': 'application/json' }, opts.header),
      timeout: config.requestTimeoutMs,
      success: (res) => resolve(res),
      fail: (err) => reject(new ApiError(0, 'network', (err && err.errMsg) || 'request:fail')),
    });
  });
}

// The body of a 2xx answer, or an ApiError carrying the host's error code and message.
function unwrap(res) {
  if (res.statusCode >= 200 && res.statusCode < 300) {
    return res.data;
  }
  const error = (res.data && res.data.error) || {};
  return Promise.reject(
    new ApiError(res.statusCode, error.code || 'http_' + res.statusCode, error.message),
  );
}

function wxLogin() {
  return new Promise((resolve, reject) => {
    wx.login({
      success: (res) => {
        if (res.code) {
          resolve(res.code);
        } else {
          reject(new ApiError(0, 'login_failed', res.errMsg || 'wx.login gave no code'));
        }
      },
      fail: (err) => reject(new ApiError(0, 'login_failed', (err && err.errMsg) || 'login:fail')),
    });
  });
}

let loggingIn = null;

// wx.login → POST /api/login {code} → {token, openid, expires_in}; the session is kept in
// storage so a restart of the mini-program does not log in again. Concurrent callers share one
// login (a wx.login code can be redeemed only once).
function login() {
  if (!loggingIn) {
    loggingIn = wxLogin()
      .then((code) => request('/api/login', { method: 'POST', data: { code } }))
      .then(unwrap)
      .then((body) => {
        const session = {
          token: body.token,
          openid: body.openid,
          expiresAt: Date.now() + body.expires_in * 1000,
        };
        wx.setStorageSync(SESSION_KEY, session);
        return session;
      })
      .finally(() => {
        loggingIn = null;
      });
  }
  return loggingIn;
}

// The stored session if it has more than a minute left, else a new login.
function ensureLogin() {
  const session = wx.getStorageSync(SESSION_KEY);
  if (session && session.token && session.expiresAt > Date.now() + 60 * 1000) {
    return Promise.resolve(session);
  }
  return login();
}

// A call with the session token. A 401 (the host forgot or expired the session earlier than
// we thought) logs in again, once, and repeats the call.
async function authed(path, options) {
  const call = (session) =>
    request(path, Object.assign({}, options, { header: { Authorization: 'Bearer ' + session.token } }));
  let res = await call(await ensureLogin());
  if (res.statusCode === 401) {
    wx.removeStorageSync(SESSION_KEY);
    res = await call(await login());
  }
  return unwrap(res);
}

function orderPath(outTradeNo) {
  return '/api/orders/' + encodeURIComponent(outTradeNo);
}

// GET /api/orders/{no}: the user's own order as the host stores it.
function getOrder(outTradeNo) {
  return authed(orderPath(outTradeNo));
}

// POST /api/orders/{no}/pay: the wx.requestPayment parameters, signed by the host
// (timeStamp, nonceStr, package, signType, paySign, and appId).
function payParams(outTradeNo) {
  return authed(orderPath(outTradeNo) + '/pay', { method: 'POST' });
}

// POST /api/orders/{no}/sync: the host asks WeChat about an unsettled order, applies the answer
// and returns the order.
function syncOrder(outTradeNo) {
  return authed(orderPath(outTradeNo) + '/sync', { method: 'POST' });
}

// Calls /sync after each of config.syncDelaysMs until the order is settled; returns the last
// order seen (still CREATED if WeChat has not confirmed the payment by then). Transient errors
// are retried with the next delay; others are thrown.
async function syncUntilSettled(outTradeNo) {
  const delays = config.syncDelaysMs;
  let order = null;
  let lastError = null;
  for (let i = 0; i < delays.length; i += 1) {
    if (delays[i] > 0) {
      await sleep(delays[i]);
    }
    try {
      order = await syncOrder(outTradeNo);
      lastError = null;
    } catch (e) {
      if (!(e instanceof ApiError) || !e.transient) {
        throw e;
      }
      lastError = e;
      continue;
    }
    if (SETTLED_STATES.indexOf(order.state) >= 0) {
      return order;
    }
  }
  if (!order && lastError) {
    throw lastError;
  }
  return order;
}

module.exports = {
  ApiError,
  SETTLED_STATES,
  login,
  ensureLogin,
  getOrder,
  payParams,
  syncOrder,
  syncUntilSettled,
};
