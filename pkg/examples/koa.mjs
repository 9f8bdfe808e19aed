// Koa 3: no body parser on this route; the raw bytes are read from the request stream.
import Koa from 'koa';
import { BODY_LIMIT, handleNotification } from './notify.mjs';

async function rawBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > BODY_LIMIT) throw Object.assign(new Error('body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export function app(deps) {
  const app = new Koa();
  app.use(async (ctx, next) => {
    if (ctx.method !== 'POST' || ctx.path !== '/wxpay/notify') return next();
    const { status, body } = await handleNotification(deps, ctx.request.headers, await rawBody(ctx.req));
    ctx.status = status;
    if (body) ctx.body = body;
  });
  return app;
}
