/**
 * One node of the federation. Deployed once per node; NODE_ID, its bucket and its
 * keys come from the environment. Every route but /status requires a request signed
 * by the coordinator, checked here by the node itself.
 */
import { z } from 'zod';
import { parseKeyId } from '../lib/key-id.js';
import { httpApi, parseInput, type HttpRequest } from '../lib/http/api.js';
import { parseX25519Public } from '../lib/crypto/seal.js';
import { importRequestSchema } from '../lib/node/service.js';
import { nodeRuntime } from '../lib/node/runtime.js';
import { dkgSchemas } from '../lib/node/dkg.js';
import { signSchemas } from '../lib/node/signing.js';
import { reshareSchemas } from '../lib/node/reshare.js';

const versionParam = z.coerce.number().int().min(1).max(1_000_000).optional();
const fragmentQuery = z.object({ keyId: z.string(), recipient: z.string(), version: versionParam }).strict();
const keyQuery = z.object({ keyId: z.string(), version: versionParam }).strict();

/** Authenticate, then run `fn` with the runtime; keeps every protected route one line. */
const authed = <T>(fn: (rt: ReturnType<typeof nodeRuntime>, req: HttpRequest, signer: string) => Promise<T>) =>
  async (req: HttpRequest) => {
    const rt = nodeRuntime();
    const { signer } = await rt.authenticate(req);
    return fn(rt, req, signer);
  };

export const handler = httpApi({
  service: 'fedkms-node',
  routeOf: (req) => `${req.method} ${nodeRuntime().logicalPath(req)}`,
  routes: {
    'GET /status': async () => nodeRuntime().service.status(),
    'GET /keys': authed((rt) => rt.service.listKeys()),
    'GET /key': authed((rt, req) => {
      const q = parseInput(keyQuery, req.query);
      return rt.service.describe(parseKeyId(q.keyId), q.version);
    }),
    'GET /fragment': authed((rt, req, signer) => {
      const q = parseInput(fragmentQuery, req.query);
      return rt.service.fragment(parseKeyId(q.keyId), parseX25519Public(q.recipient), signer, q.version);
    }),
    'PUT /fragment': authed(async (rt, req, signer) => {
      const body = parseInput(importRequestSchema, req.body);
      parseKeyId(body.descriptor.keyId);
      return { status: 201, body: await rt.service.importShare(body, signer) };
    }),
    // Distributed key generation, relayed by the coordinator (lib/node/dkg.ts).
    'POST /dkg/round1': authed((rt, req) => {
      const body = parseInput(dkgSchemas.round1, req.body);
      parseKeyId(body.keyId);
      return rt.dkg.round1(body);
    }),
    'POST /dkg/confirm': authed((rt, req) => rt.dkg.confirm(parseInput(dkgSchemas.confirm, req.body))),
    'POST /dkg/round2': authed((rt, req) => rt.dkg.round2(parseInput(dkgSchemas.round2, req.body))),
    'POST /dkg/round3': authed((rt, req) => rt.dkg.round3(parseInput(dkgSchemas.round3, req.body))),
    'POST /dkg/commit': authed(async (rt, req) => ({ status: 201, body: await rt.dkg.commit(parseInput(dkgSchemas.commit, req.body)) })),
    'POST /dkg/abort': authed((rt, req) => rt.dkg.abort(parseInput(dkgSchemas.abort, req.body))),
    // FROST signing (lib/node/signing.ts).
    'POST /sign/commit': authed((rt, req) => {
      const body = parseInput(signSchemas.commit, req.body);
      return rt.signing.commit({ ...body, keyId: parseKeyId(body.keyId) });
    }),
    'POST /sign/preprocess': authed((rt, req) => {
      const body = parseInput(signSchemas.preprocess, req.body);
      return rt.signing.preprocess({ ...body, keyId: parseKeyId(body.keyId) });
    }),
    'POST /sign/share': authed((rt, req, signer) => {
      const body = parseInput(signSchemas.share, req.body);
      return rt.signing.share({ ...body, keyId: parseKeyId(body.keyId) }, signer);
    }),
    // Refresh and reshare (lib/node/reshare.ts).
    'POST /reshare/deal': authed((rt, req, signer) => {
      const body = parseInput(reshareSchemas.deal, req.body);
      return rt.reshare.deal({ ...body, keyId: parseKeyId(body.keyId) }, signer);
    }),
    'POST /reshare/receive': authed((rt, req) => rt.reshare.receive(parseInput(reshareSchemas.receive, req.body))),
    'POST /reshare/commit': authed(async (rt, req, signer) => ({ status: 201, body: await rt.reshare.commit(parseInput(reshareSchemas.commit, req.body), signer) })),
    'DELETE /fragment': authed((rt, req, signer) => {
      const q = parseInput(keyQuery.required({ version: true }), req.query);
      return rt.service.deleteVersion(parseKeyId(q.keyId), q.version!, signer);
    }),
  },
});
