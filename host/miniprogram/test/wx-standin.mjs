// A small stand-in for the WeChat mini-program runtime, enough to run the sample's real files in
// Node: a `wx` object whose network calls are real (fetch to the host; login codes and the
// WeChat client's payment check from the simulator), `App()` / `Page()` / `getApp()`, and a
// CommonJS `require` with the mini-program's relative resolution. The files are loaded with
// `vm` as they are, never rewritten.
//
// An APIv2 sandbox's simulator speaks HTTPS under its own test CA (`simulator CA:` in the
// sandbox's output): its calls then go through node:https trusting that CA alone — `fetch`
// has no per-request CA, and certificate checks are never turned off.

import { readFileSync } from 'node:fs';
import https from 'node:https';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

export const MINIPROGRAM_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

function parseBody(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// One request over node:https, trusting `ca` (PEM) as the only root.
function httpsRequest(url, { method, headers, body, ca }) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, ca }, (res) => {
      res.setEncoding('utf8');
      let text = '';
      res.on('data', (d) => {
        text += d;
      });
      res.on('end', () => resolve({ status: res.statusCode, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${url}: timed out`)));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/**
 * A call to the simulator: `{status, data}` (JSON when the answer is JSON). An `https:` URL
 * needs `ca`, the simulator CA's PEM (the sandbox's `simulator CA:` file, read).
 */
export async function simulatorRequest(url, { method = 'POST', body, ca } = {}) {
  const headers = {};
  let payload;
  if (method !== 'GET') {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body ?? {});
  }
  if (new URL(url).protocol === 'https:') {
    if (!ca) throw new Error(`${url}: an https simulator needs its CA (the sandbox's "simulator CA:" file)`);
    const { status, text } = await httpsRequest(url, { method, headers, body: payload, ca });
    return { status, data: parseBody(text) };
  }
  const res = await fetch(url, { method, headers, body: payload });
  return { status: res.status, data: parseBody(await res.text()) };
}

// Calls a wx-style callback set ({success, fail, complete}) asynchronously, as WeChat does.
function settle(opts, ok, res) {
  setImmediate(() => {
    if (ok) opts.success?.(res);
    else opts.fail?.(res);
    opts.complete?.(res);
  });
}

function withoutCallbacks(opts) {
  const { success, fail, complete, ...rest } = opts;
  return rest;
}

/**
 * The `wx` stand-in.
 *
 * - `hostUrl`: the only origin `wx.request` may reach (like the request domain whitelist).
 * - `simulatorUrl`: where the "WeChat client" gets login codes and checks payments.
 * - `simulatorCa`: the file of the simulator's test CA (PEM), needed when `simulatorUrl` is
 *   `https:` (APIv2 sandboxes).
 * - `openid`: the WeChat user (login codes are issued for them; payments are checked for them).
 *
 * `payment` decides what the user does in WeChat's cashier, after WeChat's client-side check
 * of the parameters passed (which fails the call with the check's errMsg, as WeChat would):
 * 'pay' (default) pays through the simulator, which notifies the host; 'cancel' closes the
 * cashier (`requestPayment:fail cancel`). `tamper(params)` changes the parameters between the
 * page and the check (to prove the check is real).
 */
export function createWx({ hostUrl, simulatorUrl, simulatorCa, openid }) {
  const ca = simulatorCa ? readFileSync(simulatorCa, 'utf8') : undefined;
  const postJson = (url, body) => simulatorRequest(url, { body, ca });
  const storage = new Map();
  const log = {
    logins: 0,
    requests: [], // {url, method, header, data, statusCode, response}
    payments: [], // {params, check, errMsg}
    toasts: [],
    modals: [],
    loadings: [],
  };
  const ui = { loading: false };
  const wx = {
    payment: 'pay',
    tamper: null,
    log,
    ui,

    login(opts = {}) {
      log.logins += 1;
      postJson(`${simulatorUrl}/sim/login/code`, { openid }).then(
        ({ status, data }) =>
          status === 200 && data.code
            ? settle(opts, true, { code: data.code, errMsg: 'login:ok' })
            : settle(opts, false, { errMsg: `login:fail simulator answered ${status}` }),
        (e) => settle(opts, false, { errMsg: `login:fail ${e.message}` }),
      );
    },

    request(opts) {
      const method = (opts.method || 'GET').toUpperCase();
      const header = { ...(opts.header || {}) };
      const entry = { url: opts.url, method, header, data: clone(opts.data) };
      log.requests.push(entry);
      if (!String(opts.url).startsWith(`${hostUrl}/`)) {
        entry.errMsg = `request:fail url not in domain list: ${opts.url}`;
        settle(opts, false, { errMsg: entry.errMsg });
        return;
      }
      let url = opts.url;
      let body;
      if (method === 'GET' && opts.data && typeof opts.data === 'object') {
        const q = new URLSearchParams(opts.data).toString();
        if (q) url += (url.includes('?') ? '&' : '?') + q;
      } else if (opts.data !== undefined) {
        body = typeof opts.data === 'string' ? opts.data : JSON.stringify(opts.data);
      }
      const signal = opts.timeout ? AbortSignal.timeout(opts.timeout) : undefined;
      fetch(url, { method, headers: header, body, signal }).then(
        async (res) => {
          const text = await res.text();
          let data = text;
          if ((opts.dataType || 'json') === 'json') {
            try {
              data = JSON.parse(text);
            } catch {
              // WeChat hands over the raw string when the body is not JSON
            }
          }
          entry.statusCode = res.status;
          entry.response = data;
          settle(opts, true, {
            statusCode: res.status,
            data,
            header: Object.fromEntries(res.headers),
            errMsg: 'request:ok',
          });
        },
        (e) => {
          entry.errMsg = `request:fail ${e.message}`;
          settle(opts, false, { errMsg: entry.errMsg });
        },
      );
    },

    requestPayment(opts) {
      const params = withoutCallbacks(opts);
      const entry = { params: clone(params) };
      log.payments.push(entry);
      const sent = this.tamper ? this.tamper(clone(params)) : params;
      (async () => {
        // WeChat's client checks the parameters (types, appId, prepay_id, paySign) first.
        const check = await postJson(`${simulatorUrl}/sim/request-payment/check`, { ...sent, openid });
        entry.check = check.data;
        if (!check.data?.ok) {
          return { ok: false, errMsg: check.data?.errMsg || `requestPayment:fail check ${check.status}` };
        }
        if (this.payment === 'cancel') {
          return { ok: false, errMsg: 'requestPayment:fail cancel' };
        }
        // The user enters the password: WeChat pays and notifies the host.
        const no = encodeURIComponent(check.data.out_trade_no);
        const paid = await postJson(`${simulatorUrl}/sim/orders/${no}/pay`);
        entry.paid = paid.data;
        if (paid.status !== 200) {
          return { ok: false, errMsg: `requestPayment:fail ${paid.data?.error?.message || paid.status}` };
        }
        return { ok: true, errMsg: 'requestPayment:ok' };
      })().then(
        (r) => {
          entry.errMsg = r.errMsg;
          settle(opts, r.ok, { errMsg: r.errMsg });
        },
        (e) => {
          entry.errMsg = `requestPayment:fail ${e.message}`;
          settle(opts, false, { errMsg: entry.errMsg });
        },
      );
    },

    setStorageSync(key, value) {
      storage.set(key, JSON.stringify(value));
    },
    getStorageSync(key) {
      return storage.has(key) ? JSON.parse(storage.get(key)) : '';
    },
    removeStorageSync(key) {
      storage.delete(key);
    },

    showToast(opts) {
      ui.loading = false; // a toast replaces the loading box
      log.toasts.push(withoutCallbacks(opts));
      settle(opts, true, { errMsg: 'showToast:ok' });
    },
    showModal(opts) {
      log.modals.push(withoutCallbacks(opts));
      settle(opts, true, { confirm: true, cancel: false, errMsg: 'showModal:ok' });
    },
    showLoading(opts) {
      ui.loading = true;
      log.loadings.push(withoutCallbacks(opts));
      settle(opts, true, { errMsg: 'showLoading:ok' });
    },
    hideLoading(opts = {}) {
      ui.loading = false;
      settle(opts, true, { errMsg: 'hideLoading:ok' });
    },
    stopPullDownRefresh(opts = {}) {
      settle(opts, true, { errMsg: 'stopPullDownRefresh:ok' });
    },
  };
  return wx;
}

// setData with WeChat's key paths ('a.b', 'list[0].c').
function setPath(target, path, value) {
  const keys = path.replace(/\[(\d+)\]/g, '.$1').split('.');
  let o = target;
  for (const k of keys.slice(0, -1)) {
    if (o[k] === null || typeof o[k] !== 'object') o[k] = {};
    o = o[k];
  }
  o[keys[keys.length - 1]] = value;
}

/**
 * One mini-program instance: loads `app.js` and pages from `root` with `wx`, like WeChat does
 * on start. `configure(config)` may adjust the exports of `config.js` (the host URL) before
 * anything reads them — in WeChat's developer tools that is an edit of the file.
 */
export function createRuntime({ wx, root = MINIPROGRAM_ROOT, configure }) {
  const modules = new Map();
  let app = null;
  let pendingPage = null;
  const pages = [];

  const globals = {
    wx,
    App(def) {
      app = { ...def, globalData: clone(def.globalData) ?? {} };
    },
    Page(def) {
      pendingPage = def;
    },
    getApp() {
      return app;
    },
    getCurrentPages() {
      return pages.slice();
    },
  };
  const names = Object.keys(globals);
  // The mini-program's JavaScript environment: the language, timers and console, but no Node
  // (no process, Buffer, fetch, require of Node modules) — code that leans on Node fails here.
  const context = vm.createContext({
    console,
    setTimeout,
    clearTimeout,
    setInterval,
    clearInterval,
  });

  function load(file) {
    const rel = relative(root, file);
    if (rel.startsWith('..') || rel.startsWith(sep)) throw new Error(`require outside the mini-program: ${file}`);
    if (modules.has(file)) return modules.get(file).exports;
    const module = { exports: {} };
    modules.set(file, module);
    const source = readFileSync(file, 'utf8');
    const fn = vm.runInContext(`(function (module, exports, require, ${names.join(', ')}) {${source}\n})`, context, {
      filename: file,
    });
    const require = (p) => {
      const target = p.startsWith('/') ? join(root, p) : resolve(dirname(file), p);
      return load(target.endsWith('.js') ? target : `${target}.js`);
    };
    fn.call(module.exports, module, module.exports, require, ...names.map((n) => globals[n]));
    if (rel === 'config.js' && configure) configure(module.exports);
    return module.exports;
  }

  return {
    load,
    /** Starts the app: config.js (configured), then app.js and its onLaunch. */
    launch(options = { path: 'pages/pay/pay', query: {}, scene: 1001 }) {
      load(join(root, 'config.js'));
      load(join(root, 'app.js'));
      if (!app) throw new Error('app.js did not call App()');
      app.onLaunch?.call(app, options);
      return app;
    },
    /**
     * Opens a page with query options; resolves once its onLoad (if it returns a promise) is
     * done. The page instance has the page's methods, `data` and `setData`.
     */
    async openPage(route, query = {}) {
      pendingPage = null;
      const file = join(root, `${route}.js`);
      modules.delete(file); // each page instance runs the page file's Page() again
      load(file);
      const def = pendingPage;
      if (!def) throw new Error(`${route}.js did not call Page()`);
      const page = { route, options: { ...query }, data: clone(def.data) ?? {}, history: [] };
      for (const [k, v] of Object.entries(def)) {
        if (k !== 'data') page[k] = typeof v === 'function' ? v.bind(page) : clone(v);
      }
      page.setData = (patch, cb) => {
        const copy = clone(patch);
        page.history.push(copy);
        for (const [path, value] of Object.entries(copy)) setPath(page.data, path, value);
        if (cb) setImmediate(cb);
      };
      pages.push(page);
      await page.onLoad?.({ ...query });
      await page.onShow?.();
      await page.onReady?.();
      return page;
    },
  };
}
