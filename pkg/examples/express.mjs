// Express 5: `express.raw` keeps the body as a Buffer, for this route only (a global
// `express.json()` would hand the handler a re-serializable object, not the signed bytes).
import express from 'express';
import { BODY_LIMIT, handleNotification } from './notify.mjs';

export function app(deps) {
  const app = express();
  app.post('/wxpay/notify', express.raw({ type: () => true, limit: BODY_LIMIT }), async (req, res) => {
    const { status, body } = await handleNotification(deps, req.headers, req.body);
    if (body) res.status(status).json(body);
    else res.status(status).end();
  });
  return app;
}
