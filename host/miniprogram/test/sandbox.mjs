// Starts `wxpay-host sandbox` (the host on a fresh SQLite file, with the WeChat Pay simulator
// in-process) as a child process and reads its URLs and admin token from what it prints.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

export const HOST_BIN = process.env.WXPAY_HOST_BIN || join(REPO, 'target/debug/wxpay-host');

/**
 * Starts a sandbox; resolves to {host, admin, simulator, simulatorCa, adminToken, stop(),
 * output()}. `args` are the sandbox's options (`--v2`, `--v2 --hmac-sha256`); `env` adds
 * variables. `simulatorCa` is the file of the simulator's test CA, printed when the simulator
 * speaks HTTPS (APIv2), undefined otherwise.
 */
export async function startSandbox({ env = {}, args = [], timeoutMs = 60_000 } = {}) {
  if (!existsSync(HOST_BIN)) {
    throw new Error(
      `${HOST_BIN} does not exist: build it with \`cargo build -p wxpay-host --bin wxpay-host\` ` +
        '(scripts/test-miniprogram.sh does) or set WXPAY_HOST_BIN',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'wxpay-miniprogram-'));
  const child = spawn(HOST_BIN, ['sandbox', ...args], {
    env: {
      ...process.env,
      WXPAY_LISTEN: '127.0.0.1:0',
      WXPAY_DATABASE_URL: `sqlite://${join(dir, 'sandbox.db')}`,
      RUST_LOG: process.env.RUST_LOG || 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));

  const ready = new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`sandbox did not start in ${timeoutMs} ms\n${stdout}\n${stderr}`)), timeoutMs);
    const parse = () => {
      const pick = (re) => stdout.match(re)?.[1];
      const found = {
        host: pick(/^\s*host:\s+(\S+)/m),
        admin: pick(/^\s*admin:\s+(\S+)/m),
        simulator: pick(/^\s*simulator:\s+(\S+)/m),
        adminToken: pick(/^\s*admin token:\s+(\S+)/m),
      };
      // Optional: only an HTTPS simulator has a CA (and then it is needed).
      const simulatorCa = pick(/^\s*simulator CA:\s+(\S+)/m);
      const needsCa = found.simulator?.startsWith('https:');
      if (Object.values(found).every(Boolean) && (!needsCa || simulatorCa)) {
        clearTimeout(timer);
        res({ ...found, simulatorCa });
      }
    };
    child.stdout.on('data', (d) => {
      stdout += d;
      parse();
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rej(new Error(`sandbox exited (${code ?? signal}) before it was ready\n${stdout}\n${stderr}`));
    });
  });

  let urls;
  try {
    urls = await ready;
  } catch (e) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  return {
    ...urls,
    output: () => ({ stdout, stderr }),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The back office (admin listener, admin token). */
export function backOffice({ admin, adminToken }) {
  const call = async (method, path, body) => {
    const res = await fetch(`${admin}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let data = text;
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON
    }
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return data;
  };
  return {
    createOrder: (order) => call('POST', '/admin/orders', order),
    order: (no) => call('GET', `/admin/orders/${encodeURIComponent(no)}`),
  };
}
