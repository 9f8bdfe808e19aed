// pkg/examples: the Express, Koa and Fastify notification handlers, each started on a loopback
// port and driven over HTTP with a locally signed notification: the raw body is what gets
// verified, nothing is acknowledged before it is recorded, and WeChat's statuses come back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { keysFrom } from '../examples/notify.mjs';
import { API_V3_KEY, PUBLIC_KEY_ID, keysDir, signedNotification } from './notification-fixture.mjs';

/** An idempotent in-memory store that can be told to fail. */
function memoryStore() {
  const paid = new Map();
  return {
    paid,
    failing: false,
    async record(notification, tx) {
      await new Promise((r) => setImmediate(r)); // a real store answers later
      if (this.failing) throw new Error('database unavailable');
      if (!paid.has(notification.id)) paid.set(notification.id, tx.out_trade_no);
    },
  };
}

const servers = {
  async express(deps) {
    const { app } = await import('../examples/express.mjs');
    const server = app(deps).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
  },
  async koa(deps) {
    const { app } = await import('../examples/koa.mjs');
    const server = app(deps).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
  },
  async fastify(deps) {
    const { app } = await import('../examples/fastify.mjs');
    const f = app(deps);
    const url = await f.listen({ port: 0, host: '127.0.0.1' });
    return { url, close: () => f.close() };
  },
};

const post = (url, { headers, body }) => fetch(`${url}/wxpay/notify`, {
  method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

for (const [name, start] of Object.entries(servers)) {
  test(`${name} recipe: verify the raw body, record, then answer`, async () => {
    const store = memoryStore();
    const deps = { ...keysFrom({ publicKeyId: PUBLIC_KEY_ID,
      publicKeyPem: readFileSync(join(keysDir, 'platform_public_key.pem'), 'utf8'),
      certificatePems: [readFileSync(join(keysDir, 'platform_cert.pem'), 'utf8')],
      apiV3Key: API_V3_KEY }), store };
    const server = await start(deps);
    try {
      const n = signedNotification();
      // Recorded, then 204 with no body; a second delivery changes nothing.
      let res = await post(server.url, n);
      assert.equal(res.status, 204);
      assert.equal(await res.text(), '');
      assert.deepEqual([...store.paid], [['EV-1', 'order-1001']]);
      assert.equal((await post(server.url, n)).status, 204);
      assert.equal(store.paid.size, 1);
      // Public-key mode: the same body signed under PUB_KEY_ID_….
      res = await post(server.url, signedNotification({ id: 'EV-3', serial: PUBLIC_KEY_ID }));
      assert.equal(res.status, 204);
      // A changed byte: 401 with WeChat's FAIL body, nothing recorded.
      res = await post(server.url, { ...n, body: n.body.replace('EV-1', 'EV-2') });
      assert.equal(res.status, 401);
      assert.deepEqual(await res.json(), { code: 'FAIL', message: 'signature_mismatch' });
      // A body re-serialized by a JSON parser (spacing changed) no longer verifies.
      res = await post(server.url, { ...n, body: JSON.stringify(JSON.parse(n.body), null, 1) });
      assert.equal(res.status, 401);
      // An unknown key: 503, WeChat retries after the keys are refreshed.
      res = await post(server.url, signedNotification({ id: 'EV-4', serial: 'PUB_KEY_ID_0' }));
      assert.equal(res.status, 503);
      // Storage down: 500 and no acknowledgement; the retry is recorded.
      store.failing = true;
      const later = signedNotification({ id: 'EV-5', outTradeNo: 'order-1002' });
      res = await post(server.url, later);
      assert.equal(res.status, 500);
      assert.equal(store.paid.has('EV-5'), false);
      store.failing = false;
      assert.equal((await post(server.url, later)).status, 204);
      assert.equal(store.paid.get('EV-5'), 'order-1002');
      assert.equal(store.paid.size, 3);
    } finally {
      await server.close();
    }
  });
}
