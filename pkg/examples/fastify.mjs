// Fastify 5: inside its own plugin scope, JSON bodies are kept as a Buffer (the default JSON
// parser is replaced there only, so the app's other routes still get parsed JSON).
import Fastify from 'fastify';
import { BODY_LIMIT, handleNotification } from './notify.mjs';

export function app(deps) {
  const app = Fastify({ bodyLimit: BODY_LIMIT });
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    scope.post('/wxpay/notify', async (req, reply) => {
      const { status, body } = await handleNotification(deps, req.headers, req.body);
      reply.code(status);
      return body ?? reply.send();
    });
  });
  return app;
}
