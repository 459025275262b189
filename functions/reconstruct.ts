/**
 * The public API (the "secure aggregator"): key import and generation, listing,
 * description, reconstruction and audit verification. Stateless: any number of
 * copies can run.
 */
import { coordinatorRuntime } from '../lib/coordinator/runtime.js';
import { createKeySchema, preprocessSchema, signSchema } from '../lib/coordinator/service.js';
import { reshareSchema } from '../lib/coordinator/reshare.js';
import { httpApi, parseInput, type HttpRequest } from '../lib/http/api.js';
import { parseKeyId } from '../lib/key-id.js';
import { telemetry } from '../lib/observability.js';

const obs = telemetry('fedkms-reconstruct');

/** Authenticate the client, then run `fn`; keeps every protected route one line. */
const authed = <T>(fn: (rt: ReturnType<typeof coordinatorRuntime>, req: HttpRequest, actor: string) => Promise<T>) =>
  async (req: HttpRequest) => {
    const rt = coordinatorRuntime(process.env, obs);
    const actor = await rt.authenticate(req);
    return fn(rt, req, actor);
  };

export const handler = httpApi({
  service: 'fedkms-reconstruct',
  telemetry: obs,
  routeOf: (req) => `${req.method} ${req.rawPath.replace(/^\/keys\/[^/]+/, '/keys/{keyId}')}`,
  routes: {
    'GET /status': async () => coordinatorRuntime().coordinator.status(),
    'GET /keys': authed((rt) => rt.coordinator.listKeys()),
    'POST /keys': authed(async (rt, req, actor) => {
      const input = parseInput(createKeySchema, req.body ?? {});
      parseKeyId(input.keyId);
      return { status: 201, body: await rt.coordinator.createKey(input, actor) };
    }),
    'GET /keys/{keyId}': authed((rt, req) => rt.coordinator.describeKey(parseKeyId(req.pathParams['keyId']))),
    'POST /keys/{keyId}/sign': authed((rt, req, actor) => rt.coordinator.sign(parseKeyId(req.pathParams['keyId']), parseInput(signSchema, req.body ?? {}), actor)),
    'POST /keys/{keyId}/refresh': authed((rt, req, actor) => rt.coordinator.refresh(parseKeyId(req.pathParams['keyId']), parseInput(reshareSchema, req.body ?? {}), actor)),
    'POST /keys/{keyId}/reshare': authed((rt, req, actor) => rt.coordinator.reshare(parseKeyId(req.pathParams['keyId']), parseInput(reshareSchema, req.body ?? {}), actor)),
    'POST /keys/{keyId}/preprocess': authed((rt, req) => rt.coordinator.preprocess(parseKeyId(req.pathParams['keyId']), parseInput(preprocessSchema, req.body ?? {}).count ?? 10)),
    'GET /keys/{keyId}/public': authed((rt, req) => rt.coordinator.publicKey(parseKeyId(req.pathParams['keyId']))),
    'POST /keys/{keyId}/reconstruct': authed((rt, req, actor) => rt.coordinator.reconstruct(parseKeyId(req.pathParams['keyId']), actor)),
    'GET /audit/verify': authed((rt) => rt.coordinator.verifyAudit()),
  },
});
