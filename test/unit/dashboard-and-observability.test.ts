/** The dashboard's pure parts (security log, events, sign-in), its signed link to the coordinator, and correlation ids. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nextRecord } from '../../lib/audit/chain';
import { presentedCredential, requireViewer } from '../../lib/dashboard/auth';
import { dashboardState, eventsOf, securityOf } from '../../lib/dashboard/state';
import { QuorumError } from '../../lib/errors';
import { SCRIPT_HASH, renderPage } from '../../lib/dashboard/page';
import { DashboardFeed } from '../../lib/coordinator/dashboard-feed';
import { generateSigningKey } from '../../lib/crypto/request-signing';
import { dashboardConfig, dashboardRuntime } from '../../lib/dashboard/runtime';
import { toB64 } from '../../lib/encoding';
import type { HttpRequest } from '../../lib/http/api';
import { MemoryAudit, MemoryReplay } from '../support/fakes';
import { correlationIdFor, isValidCorrelationId } from '../../lib/observability';
import type { AuditEntry, AuditRecord } from '../../lib/ports';

const rec = (stream: string, entry: AuditEntry, time: string): AuditRecord => ({ ...nextRecord(stream, undefined, entry, new Date(time)) });

describe('dashboard security log', () => {
  const records = [
    rec('node#node2#a', { actor: 'node2', action: 'fragment.integrity', keyId: 'k1', outcome: 'failure', details: { version: 1 } }, '2026-01-01T00:00:01Z'),
    rec('node#node2#a', { actor: 'node2', action: 'fragment.integrity', keyId: 'k1', outcome: 'failure', details: { version: 1 } }, '2026-01-01T00:00:05Z'),
    rec('reconstruct#b', { actor: 'client:api-token', action: 'key.reconstruct', keyId: 'k1', outcome: 'success', details: { nodes: [{ nodeId: 'node1', status: 'valid' }, { nodeId: 'node3', status: 'invalid_share' }, { nodeId: 'node2', status: 'error', error: '503 audit_unavailable' }] } }, '2026-01-01T00:00:03Z'),
    rec('node#node1#c', { actor: 'unauthenticated', action: 'auth.replay', outcome: 'denied', details: { code: 'request_replayed', method: 'GET', path: '/fragment' } }, '2026-01-01T00:00:02Z'),
    rec('reconstruct#b', { actor: 'unauthenticated', action: 'auth.failure', outcome: 'denied', details: { code: 'auth_missing', method: 'GET', path: '/keys', sourceIp: '10.0.0.1' } }, '2026-01-01T00:00:04Z'),
  ];

  it('names the node for at-rest corruption and for a lying node, groups repeats, and reports fail-closed refusals', () => {
    const s = securityOf(records);
    const integrity = s.find((e) => e.kind === 'tamper' && e.nodeId === 'node2');
    expect(integrity).toMatchObject({ count: 2, keyId: 'k1', firstTime: '2026-01-01T00:00:01.000Z', time: '2026-01-01T00:00:05.000Z' });
    expect(s.find((e) => e.kind === 'tamper' && e.nodeId === 'node3')?.detail).toMatch(/commitment check/);
    expect(s.find((e) => e.kind === 'audit')).toMatchObject({ nodeId: 'node2' });
    expect(s.find((e) => e.kind === 'replay')).toMatchObject({ nodeId: 'node1' });
    expect(s.find((e) => e.kind === 'auth')?.detail).toBe('auth_missing GET /keys from 10.0.0.1 (refused by reconstruct)');
    expect(s[0]!.time >= s.at(-1)!.time).toBe(true);
  });

  it('lists operations, newest first, without node-internal steps or refusals', () => {
    const e = eventsOf(records);
    expect(e.map((x) => x.action)).toEqual(['key.reconstruct']);
    expect(e[0]!.nodes).toEqual([{ nodeId: 'node1', status: 'valid' }, { nodeId: 'node3', status: 'invalid_share' }, { nodeId: 'node2', status: 'error' }]);
  });
});

describe('dashboard sign-in and page', () => {
  const token = 'viewer-token-0123456789';
  const basic = (user: string, pw: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}` });
  it('accepts the viewer token as a Basic password (any user) or a bearer token', () => {
    expect(requireViewer(basic('anyone', token), token)).toBe('viewer:dashboard-token');
    expect(requireViewer({ authorization: `Bearer ${token}` }, token)).toBe('viewer:dashboard-token');
    expect(presentedCredential(basic('a', 'p:with:colons'))).toBe('p:with:colons');
    expect(() => requireViewer({}, token)).toThrow(expect.objectContaining({ code: 'auth_missing' }));
    expect(() => requireViewer(basic('a', 'wrong'), token)).toThrow(expect.objectContaining({ code: 'auth_invalid' }));
  });
  it('pins its only script by hash and loads nothing from elsewhere', () => {
    const html = renderPage({ refreshS: 5 });
    // The one link is an empty inline icon: the browser then asks for no /favicon.ico.
    const icon = '<link rel="icon" href="data:,">';
    expect(html).toContain(icon);
    expect(html.replace(icon, '')).not.toMatch(/<script[^>]+src=|<link[^>]+href=|https?:\/\//);
    expect(SCRIPT_HASH).toMatch(/^sha256-[A-Za-z0-9+/]+=*$/);
  });
});

describe('dashboard to coordinator, signed with the dashboard key', () => {
  const dashboardKey = generateSigningKey();
  const viewer = 'viewer-token-0123456789';
  // The dashboard's secret is read at run time from a file (Secrets Manager in AWS), never from its environment.
  const secret = { signingPrivate: toB64(dashboardKey.privateKey), viewerToken: viewer };
  const secretsFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'fedkms-dash-')), 'secret.json');
  writeFileSync(secretsFile, JSON.stringify(secret));
  const env = (over: Record<string, string> = {}) => ({ COORDINATOR_URL: 'https://api.example', DASHBOARD_SECRETS_FILE: secretsFile, ...over });
  const federation = {
    status: async () => ({ threshold: 2, total: 3, nodesUp: 3, quorum: true, nodes: ['node1', 'node2', 'node3'].map((nodeId) => ({ nodeId, status: 'valid', healthy: true })) }),
    listKeys: async () => ({ keys: [], nodes: [] }),
    describeKey: async () => {
      throw new Error('no keys');
    },
  };
  const setup = async (o: { feedKey?: Uint8Array | null } = {}) => {
    const feedKey = o.feedKey === null ? undefined : (o.feedKey ?? dashboardKey.publicKey);
    const audit = Object.assign(new MemoryAudit(), { readBounded: async () => ({ records: [...audit.records], complete: true }) });
    const replay = new MemoryReplay();
    const feed = new DashboardFeed({ federation, audit, replay, dashboardPublicKey: feedKey, threshold: 2, nodeIds: ['node1', 'node2', 'node3'], maxKeys: 10, maxAuditItems: 100, maxSkewS: 60, ownStream: 'reconstruct' });
    const sent: { url: string; init: RequestInit }[] = [];
    /** Hands the signed request to the feed, as the coordinator's route would, and answers like httpApi. */
    const fetchImpl = (async (url: string, init: RequestInit) => {
      sent.push({ url, init });
      const u = new URL(url);
      const rawBody = typeof init.body === 'string' ? init.body : '';
      const req = { method: init.method!, rawPath: u.pathname, query: {}, headers: init.headers as Record<string, string>, rawBody, body: rawBody ? JSON.parse(rawBody) : undefined, pathParams: {} } as unknown as HttpRequest;
      try {
        await feed.authenticate(req);
        const body = u.pathname === '/federation/state' ? await feed.state() : await feed.recordRefusal(req.body);
        return new Response(JSON.stringify(body), { status: 200 });
      } catch (e) {
        const err = e as { status?: number; code?: string };
        return new Response(JSON.stringify({ error: { code: err.code } }), { status: err.status ?? 500 });
      }
    }) as unknown as typeof fetch;
    return { audit, replay, sent, rt: await dashboardRuntime(env(), fetchImpl) };
  };

  it('reads the state document from the coordinator, and the coordinator accepts that key only once per request id', async () => {
    const { rt, sent, replay } = await setup();
    const state = await rt.state();
    expect(state.federation).toEqual({ threshold: 2, total: 3, nodesUp: 3, quorum: true });
    expect(state.nodes.map((n) => n.state)).toEqual(['up', 'up', 'up']);
    expect(sent[0]!.url).toBe('https://api.example/federation/state');
    expect((sent[0]!.init.headers as Record<string, string>)['x-fedkms-signer']).toBe('dashboard');
    expect(replay.seen.size).toBe(1);
  });

  it('is refused when the coordinator does not know its key, and says so without detail', async () => {
    const { rt } = await setup({ feedKey: generateSigningKey().publicKey });
    await expect(rt.state()).rejects.toMatchObject({ status: 502, code: 'coordinator_error', details: { status: 401, code: 'signature_invalid' } });
    const none = await setup({ feedKey: null });
    await expect(none.rt.state()).rejects.toMatchObject({ status: 502, details: { code: 'signer_unknown' } });
  });

  it('reports a wrong viewer token to the coordinator, which audits it in the dashboard stream; a missing one is not reported', async () => {
    const { rt, audit } = await setup();
    const req = (authorization?: string) => ({ method: 'GET', rawPath: '/dashboard', headers: authorization ? { authorization } : {}, sourceIp: '192.0.2.7' }) as unknown as HttpRequest;
    await expect(rt.authenticate(req())).rejects.toMatchObject({ code: 'auth_missing' });
    expect(audit.records).toEqual([]);
    await expect(rt.authenticate(req('Bearer wrong-token'))).rejects.toMatchObject({ code: 'auth_invalid' });
    expect(audit.records).toEqual([expect.objectContaining({ stream: 'dashboard', action: 'auth.failure', outcome: 'denied', details: { code: 'auth_invalid', method: 'GET', path: '/dashboard', sourceIp: '192.0.2.7' } })]);
    expect(await rt.authenticate(req(`Bearer ${viewer}`))).toBe('viewer:dashboard-token');
  });

  it('maps an unreachable coordinator to 503 and keeps the refusal when reporting fails', async () => {
    const down = (async () => {
      throw new TypeError('fetch failed');
    }) as unknown as typeof fetch;
    const rt = await dashboardRuntime(env(), down);
    await expect(rt.state()).rejects.toMatchObject({ status: 503, code: 'coordinator_unreachable' });
    await expect(rt.authenticate({ method: 'GET', rawPath: '/dashboard', headers: { authorization: 'Bearer nope' } } as unknown as HttpRequest)).rejects.toMatchObject({ code: 'auth_invalid' });
  });

  it('gives up reporting a refusal after 2 s, so a wrong password is answered without waiting on the coordinator', async () => {
    let signal: AbortSignal | undefined;
    const hang = ((_url: string, init: RequestInit) => {
      signal = init.signal ?? undefined;
      return new Promise((_, reject) => init.signal?.addEventListener('abort', () => reject(new Error('aborted'))));
    }) as unknown as typeof fetch;
    // The default coordinator timeout is 20 s; the report is abandoned at 2 s (AbortSignal.timeout runs on real time).
    const rt = await dashboardRuntime(env(), hang);
    await expect(rt.authenticate({ method: 'GET', rawPath: '/dashboard', headers: { authorization: 'Bearer nope' } } as unknown as HttpRequest)).rejects.toMatchObject({ code: 'auth_invalid' });
    expect(signal?.aborted).toBe(true);
  });

  it('checks its configuration by hand and names the bad variable', () => {
    expect(dashboardConfig(env(), secret)).toMatchObject({ COORDINATOR_URL: 'https://api.example', DASHBOARD_REFRESH_S: 5, COORDINATOR_TIMEOUT_MS: 20_000 });
    expect(() => dashboardConfig(env({ COORDINATOR_URL: 'ftp://x' }), secret)).toThrow('COORDINATOR_URL');
    expect(() => dashboardConfig(env(), { ...secret, signingPrivate: toB64(new Uint8Array(31)) })).toThrow('signingPrivate');
    expect(() => dashboardConfig(env(), { ...secret, viewerToken: 'short' })).toThrow('viewerToken');
    expect(() => dashboardConfig(env({ DASHBOARD_REFRESH_S: '1' }), secret)).toThrow('DASHBOARD_REFRESH_S');
    expect(() => dashboardConfig(env({ DASHBOARD_REFRESH_S: '2.5' }), secret)).toThrow('DASHBOARD_REFRESH_S');
  });

  it('refuses a malformed refusal report (the coordinator validates what the dashboard sends)', async () => {
    const { audit } = await setup();
    const feed = new DashboardFeed({ federation, audit, replay: new MemoryReplay(), dashboardPublicKey: dashboardKey.publicKey, threshold: 2, nodeIds: [], maxKeys: 1, maxAuditItems: 100, maxSkewS: 60, ownStream: 'reconstruct' });
    await expect(feed.recordRefusal({ code: 'auth_invalid', method: 'GET', path: '/x', extra: 1 })).rejects.toMatchObject({ status: 400, code: 'invalid_input' });
    await expect(feed.recordRefusal({ code: 'DROP TABLE', method: 'GET', path: '/x' })).rejects.toMatchObject({ status: 400 });
    expect(audit.records).toEqual([]);
  });
});

describe('correlation ids', () => {
  it('keeps a well-formed caller id and replaces anything else', () => {
    expect(correlationIdFor('abc-12345678')).toBe('abc-12345678');
    expect(correlationIdFor('bad id"}\n', 'fallback-0001')).toBe('fallback-0001');
    expect(isValidCorrelationId(correlationIdFor('x'))).toBe(true);
    expect(isValidCorrelationId('a'.repeat(129))).toBe(false);
  });
});

describe('dashboard key availability under load', () => {
  const nodes = ['node1', 'node2', 'node3'];
  const deps = (describeKey: () => Promise<never>) => ({
    federation: {
      status: async () => ({ threshold: 2, total: 3, nodesUp: 3, quorum: true, nodes: nodes.map((nodeId) => ({ nodeId, status: 'valid', healthy: true })) }),
      listKeys: async () => ({ keys: [{ keyId: 'k', latestVersion: 1, heldBy: nodes }], nodes: [] }),
      describeKey,
    },
    audit: { readBounded: async () => ({ records: [], complete: true }) },
    threshold: 2,
    nodeIds: nodes,
  });
  const failing = (statuses: string[]) => async (): Promise<never> => {
    throw new QuorumError('no quorum', { nodes: statuses.map((status, i) => ({ nodeId: nodes[i]!, status })) });
  };

  it('says "unknown" when nodes that did not answer in time could still make the quorum', async () => {
    const s = await dashboardState(deps(failing(['valid', 'timeout', 'busy'])));
    expect(s.keys.items[0]).toMatchObject({ keyId: 'k', usable: null, silent: 2, available: 1 });
  });

  it('says "unusable" when the nodes that answered rule the quorum out', async () => {
    const s = await dashboardState(deps(failing(['valid', 'corrupted', 'unreachable'])));
    expect(s.keys.items[0]).toMatchObject({ keyId: 'k', usable: false, silent: 0 });
  });
});
