// The sample mini-program (host/miniprogram), run in Node against a real sandbox host.
//
// Each test starts a fresh mini-program — its own `wx` stand-in (wx-standin.mjs), storage and
// WeChat user — and loads the real app.js / config.js / api.js / pages/pay/pay.js with `vm`.
// `wx.request` reaches the host over HTTP; `wx.login` gets its code from the simulator;
// `wx.requestPayment` runs the simulator's client-side check of the parameters (as WeChat's
// client verifies paySign) and then pays like a user, so the simulator notifies the host.
// The merchant's back office creates each order on the host's admin listener.
//
// Modes: every test below runs once per host mode, each against its own sandbox:
//   v3       `wxpay-host sandbox`                      APIv3, wx.requestPayment signType RSA
//   v2       `wxpay-host sandbox --v2`                 APIv2, signType MD5
//   v2-hmac  `wxpay-host sandbox --v2 --hmac-sha256`   APIv2, signType HMAC-SHA256
// WXPAY_MINIPROGRAM_MODES (comma-separated) picks some; the default is all three. The page
// itself passes on whatever signType the host returns; the tests check it is the mode's. In the
// v2 modes the simulator speaks HTTPS under a test CA (the sandbox prints its file as
// `simulator CA:`): the stand-in's WeChat-side calls trust that CA and nothing else.
//
// Needs target/debug/wxpay-host (or WXPAY_HOST_BIN): scripts/test-miniprogram.sh builds it.

import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { backOffice, startSandbox } from './sandbox.mjs';
import { MINIPROGRAM_ROOT, createRuntime, createWx, simulatorRequest } from './wx-standin.mjs';

// args: the sandbox's options; signType: what the host must hand to wx.requestPayment;
// https: whether the simulator speaks HTTPS (with its CA printed).
const MODES = {
  v3: { args: [], signType: 'RSA', https: false },
  v2: { args: ['--v2'], signType: 'MD5', https: true },
  'v2-hmac': { args: ['--v2', '--hmac-sha256'], signType: 'HMAC-SHA256', https: true },
};
const SELECTED = (process.env.WXPAY_MINIPROGRAM_MODES || 'v3,v2,v2-hmac')
  .split(',')
  .map((m) => m.trim())
  .filter(Boolean);
for (const m of SELECTED) {
  if (!MODES[m]) throw new Error(`WXPAY_MINIPROGRAM_MODES: unknown mode ${m} (known: ${Object.keys(MODES)})`);
}

const PAY_PAGE = 'pages/pay/pay';
const SESSION_KEY = 'wxpay.session';

async function waitFor(what, fn, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---------------------------------------------------------------------------------------------
// Static checks of the project files (no host needed)

describe('project files', () => {
  test('app.json pages exist with .js, .json, .wxml and .wxss', () => {
    const app = JSON.parse(readFileSync(join(MINIPROGRAM_ROOT, 'app.json'), 'utf8'));
    assert.ok(app.pages.includes(PAY_PAGE));
    for (const page of app.pages) {
      for (const ext of ['js', 'json', 'wxml', 'wxss']) {
        assert.ok(existsSync(join(MINIPROGRAM_ROOT, `${page}.${ext}`)), `${page}.${ext}`);
      }
    }
    for (const f of ['project.config.json', 'sitemap.json', 'pages/pay/pay.json']) {
      JSON.parse(readFileSync(join(MINIPROGRAM_ROOT, f), 'utf8'));
    }
    const project = JSON.parse(readFileSync(join(MINIPROGRAM_ROOT, 'project.config.json'), 'utf8'));
    assert.equal(project.compileType, 'miniprogram');
    assert.ok(project.packOptions.ignore.some((i) => i.value === 'test'), 'tests are not uploaded');
  });

  test('every handler the page template binds is a page method', async () => {
    const wxml = readFileSync(join(MINIPROGRAM_ROOT, `${PAY_PAGE}.wxml`), 'utf8');
    const bound = [...wxml.matchAll(/\b(?:bind|catch)\w+="(\w+)"/g)].map((m) => m[1]);
    assert.ok(bound.includes('onPay'));
    const wx = createWx({ hostUrl: 'http://127.0.0.1:9', simulatorUrl: 'http://127.0.0.1:9', openid: 'o' });
    const page = await createRuntime({ wx }).openPage(PAY_PAGE, {});
    for (const name of bound) assert.equal(typeof page[name], 'function', name);
  });

  test('a page opened without out_trade_no says so and offers no payment', async () => {
    const wx = createWx({ hostUrl: 'http://127.0.0.1:9', simulatorUrl: 'http://127.0.0.1:9', openid: 'o' });
    const page = await createRuntime({ wx }).openPage(PAY_PAGE, {});
    assert.equal(page.data.status, 'error');
    assert.match(page.data.message, /out_trade_no/);
    assert.equal(page.data.canPay, false);
    assert.equal(wx.log.requests.length, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Against a sandbox host, per mode

for (const mode of SELECTED) {
  describe(`sample mini-program against a ${mode} sandbox host`, () => {
    const { args, signType, https } = MODES[mode];
    // For order numbers and openids: letters and digits only.
    const tag = mode.replace(/[^A-Za-z0-9]/g, '');
    let sb;
    let office;
    let seq = 0;

    before(async () => {
      sb = await startSandbox({ args });
      office = backOffice(sb);
    });
    after(async () => {
      await sb?.stop();
    });

    const simulatorCa = () => (sb.simulatorCa ? readFileSync(sb.simulatorCa, 'utf8') : undefined);
    const simulatorOrder = async (no) => {
      const { status, data } = await simulatorRequest(`${sb.simulator}/sim/orders/${encodeURIComponent(no)}`, {
        method: 'GET',
        ca: simulatorCa(),
      });
      assert.equal(status, 200, JSON.stringify(data));
      return data;
    };

    test(`the sandbox runs in ${mode} mode`, async () => {
      assert.equal(new URL(sb.simulator).protocol, https ? 'https:' : 'http:', sb.simulator);
      if (https) {
        assert.ok(sb.simulatorCa && existsSync(sb.simulatorCa), `simulator CA file: ${sb.simulatorCa}`);
        assert.match(simulatorCa(), /-----BEGIN CERTIFICATE-----/);
        // The simulator's certificate is not one a default client trusts: the CA is needed.
        await assert.rejects(fetch(`${sb.simulator}/sim/orders/NONE`));
      } else {
        assert.equal(sb.simulatorCa, undefined);
      }
    });

    // A user opens the mini-program (App onLaunch logs in), then the back office creates an
    // order for them.
    async function userWithOrder(amount = 1234) {
      seq += 1;
      const openid = `o_mp_${tag}_${process.pid}_${seq}`;
      const wx = createWx({ hostUrl: sb.host, simulatorUrl: sb.simulator, simulatorCa: sb.simulatorCa, openid });
      const runtime = createRuntime({
        wx,
        configure: (config) => {
          config.apiBase = sb.host; // the one edit a developer makes in config.js
          config.syncDelaysMs = [0, 250, 500, 1000, 2000, 3000];
        },
      });
      const app = runtime.launch();
      await waitFor('the launch login', () => app.globalData.openid);
      assert.equal(app.globalData.openid, openid);
      const no = `MP${tag.toUpperCase()}${Date.now()}${seq}`.slice(0, 32);
      const order = await office.createOrder({ openid, amount, description: 'Sample tea', out_trade_no: no });
      assert.equal(order.state, 'CREATED');
      return { wx, runtime, app, openid, no };
    }

    const payAnswers = (wx, no) =>
      wx.log.requests.filter((r) => r.url === `${sb.host}/api/orders/${no}/pay` && r.statusCode === 200);
    const paidEvents = (order) => order.events.filter((e) => e.to_state === 'PAID');

    test('pay: wx.login → /api/login, /pay, wx.requestPayment with the host’s parameters, /sync → PAID', async () => {
      const { wx, runtime, no, openid } = await userWithOrder(1234);
      const page = await runtime.openPage(PAY_PAGE, { out_trade_no: no });
      assert.equal(page.data.status, 'ready');
      assert.equal(page.data.canPay, true);
      assert.equal(page.data.amountText, '12.34');
      assert.equal(page.data.order.state, 'CREATED');

      await page.onPay();

      assert.equal(page.data.status, 'paid', page.data.message);
      assert.equal(page.data.order.state, 'PAID');
      assert.ok(page.data.order.transaction_id);
      assert.equal(page.data.busy, false);
      assert.equal(page.data.canPay, false);
      assert.equal(wx.ui.loading, false, 'no loading box left open');
      assert.deepEqual(wx.log.toasts.at(-1), { title: '支付成功', icon: 'success' });
      assert.equal(wx.log.modals.length, 0);

      // one login (onLaunch; the page reused the stored session) with a simulator code
      assert.equal(wx.log.logins, 1);
      const session = wx.getStorageSync(SESSION_KEY);
      assert.equal(session.openid, openid);
      const login = wx.log.requests.find((r) => r.url === `${sb.host}/api/login`);
      assert.deepEqual(Object.keys(login.data), ['code']);
      assert.deepEqual(Object.keys(login.response).sort(), ['expires_in', 'openid', 'token']);
      for (const r of wx.log.requests.filter((r) => r.url.includes('/api/orders/'))) {
        assert.equal(r.header.Authorization, `Bearer ${session.token}`);
      }

      // wx.requestPayment got exactly what the host returned, and WeChat's check accepted it
      const answers = payAnswers(wx, no);
      assert.equal(answers.length, 1);
      const host = answers[0].response;
      for (const k of ['timeStamp', 'nonceStr', 'package', 'signType', 'paySign']) {
        assert.equal(typeof host[k], 'string', k);
      }
      assert.equal(host.signType, signType, `signType in ${mode} mode`);
      assert.equal(wx.log.payments.length, 1);
      assert.deepEqual(wx.log.payments[0].params, host);
      assert.equal(wx.log.payments[0].check.ok, true);
      assert.equal(wx.log.payments[0].check.out_trade_no, no);
      assert.equal(wx.log.payments[0].errMsg, 'requestPayment:ok');

      // the page asked the host to confirm, and stopped once PAID
      const syncs = wx.log.requests.filter((r) => r.url === `${sb.host}/api/orders/${no}/sync`);
      assert.ok(syncs.length >= 1);
      assert.equal(syncs.at(-1).response.state, 'PAID');
      assert.ok(syncs.slice(0, -1).every((r) => r.response.state === 'CREATED'));

      // the host's order is PAID, exactly once
      const order = await office.order(no);
      assert.equal(order.state, 'PAID');
      assert.equal(order.paid_amount, 1234);
      assert.equal(paidEvents(order).length, 1, JSON.stringify(order.events));
      assert.ok(!order.double_payment);
      assert.equal((await simulatorOrder(no)).trade_state, 'SUCCESS');

      // a second tap on a paid order does nothing
      await page.onPay();
      assert.equal(wx.log.payments.length, 1);
      assert.equal(payAnswers(wx, no).length, 1);
    });

    test('cancel: requestPayment:fail cancel → calm message, order still CREATED and payable', async () => {
      const { wx, runtime, no } = await userWithOrder(500);
      const page = await runtime.openPage(PAY_PAGE, { out_trade_no: no });
      wx.payment = 'cancel';

      await page.onPay();

      assert.equal(wx.log.payments.at(-1).errMsg, 'requestPayment:fail cancel');
      assert.equal(page.data.status, 'cancelled');
      assert.match(page.data.message, /取消支付/);
      assert.match(page.data.message, /保留/);
      assert.equal(page.data.canPay, true);
      assert.equal(page.data.busy, false);
      assert.equal(wx.ui.loading, false);
      assert.deepEqual(wx.log.toasts.at(-1), { title: '已取消支付', icon: 'none' });
      assert.equal(wx.log.modals.length, 0, 'a cancel is not an error dialog');
      assert.equal((await office.order(no)).state, 'CREATED');
      assert.equal((await simulatorOrder(no)).trade_state, 'NOTPAY');

      // the order stays payable: the next tap pays it
      wx.payment = 'pay';
      await page.onPay();
      assert.equal(page.data.status, 'paid', page.data.message);
      const order = await office.order(no);
      assert.equal(order.state, 'PAID');
      assert.equal(paidEvents(order).length, 1);
    });

    test('failure: a tampered paySign fails WeChat’s check → the reason is shown, order stays CREATED', async () => {
      const { wx, runtime, no } = await userWithOrder(800);
      const page = await runtime.openPage(PAY_PAGE, { out_trade_no: no });
      wx.tamper = (params) => {
        const sign = params.paySign;
        const flipped = (sign[0] === 'A' ? 'B' : 'A') + sign.slice(1);
        return { ...params, paySign: flipped };
      };

      await page.onPay();

      const errMsg = wx.log.payments.at(-1).errMsg;
      assert.match(errMsg, /^requestPayment:fail /);
      assert.notEqual(errMsg, 'requestPayment:fail cancel');
      assert.equal(wx.log.payments.at(-1).check.ok, false);
      const reason = errMsg.replace(/^requestPayment:fail\s*/, '');
      assert.equal(page.data.status, 'failed');
      assert.equal(page.data.message, `支付未完成：${reason}`);
      assert.equal(page.data.canPay, true);
      assert.equal(wx.ui.loading, false);
      assert.deepEqual(wx.log.modals.at(-1), { title: '支付失败', content: reason, showCancel: false });
      assert.equal(page.data.order.state, 'CREATED');
      assert.equal((await office.order(no)).state, 'CREATED');
      assert.equal((await simulatorOrder(no)).trade_state, 'NOTPAY');

      // untampered, the same order pays
      wx.tamper = null;
      await page.onPay();
      assert.equal(page.data.status, 'paid', page.data.message);
      assert.equal(paidEvents(await office.order(no)).length, 1);
    });

    test('token expiry: a 401 logs in again once and the call goes through', async () => {
      const { wx, runtime, no } = await userWithOrder(300);
      const stale = wx.getStorageSync(SESSION_KEY);
      wx.setStorageSync(SESSION_KEY, { ...stale, token: 'f'.repeat(48) }); // the host does not know it

      const page = await runtime.openPage(PAY_PAGE, { out_trade_no: no });

      assert.equal(page.data.status, 'ready', page.data.message);
      assert.equal(wx.log.logins, 2);
      const orderCalls = wx.log.requests.filter((r) => r.url === `${sb.host}/api/orders/${no}`);
      assert.deepEqual(
        orderCalls.map((r) => r.statusCode),
        [401, 200],
      );
      assert.notEqual(wx.getStorageSync(SESSION_KEY).token, stale.token);

      await page.onPay();
      assert.equal(page.data.status, 'paid', page.data.message);
      assert.equal(wx.log.logins, 2);
    });

    test('someone else’s order is not found, and cannot be paid', async () => {
      const { no } = await userWithOrder(100);
      const { wx, runtime } = await userWithOrder(100);
      const page = await runtime.openPage(PAY_PAGE, { out_trade_no: no });
      assert.equal(page.data.status, 'error');
      assert.equal(page.data.message, '订单不存在');
      assert.equal(page.data.canPay, false);
      await page.onPay();
      assert.equal(wx.log.payments.length, 0);
    });

    test('an order paid elsewhere meanwhile: /pay refuses, the page shows it paid', async () => {
      const { wx, runtime, no } = await userWithOrder(200);
      const page = await runtime.openPage(PAY_PAGE, { out_trade_no: no });
      // paid in another tab: get parameters and pay through the stand-in directly
      const other = await payElsewhere(wx, no);
      assert.equal(other, 'requestPayment:ok');
      await waitFor('the notification', async () => (await office.order(no)).state === 'PAID');

      await page.onPay();

      assert.equal(wx.log.payments.length, 1, 'no second requestPayment');
      assert.equal(page.data.order.state, 'PAID');
      assert.equal(page.data.status, 'paid');
      assert.equal(page.data.canPay, false);
      assert.equal(wx.log.modals.length, 0, 'no failure dialog for a paid order');
      assert.deepEqual(wx.log.toasts.at(-1), { title: '支付成功', icon: 'success' });
      assert.equal(paidEvents(await office.order(no)).length, 1);
    });

    // Pays `no` with the page's session but outside the page (a second device or tab).
    async function payElsewhere(wx, no) {
      const { token } = wx.getStorageSync(SESSION_KEY);
      const res = await fetch(`${sb.host}/api/orders/${no}/pay`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(res.status, 200);
      const params = await res.json();
      return new Promise((resolve) => {
        wx.requestPayment({ ...params, success: (r) => resolve(r.errMsg), fail: (r) => resolve(r.errMsg) });
      });
    }
  });
}
