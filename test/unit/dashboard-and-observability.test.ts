/** The dashboard's pure parts (security log, events, sign-in), node signer authorization, and correlation ids. */
import { nextRecord } from '../../lib/audit/chain';
import { presentedCredential, requireViewer } from '../../lib/dashboard/auth';
import { eventsOf, securityOf } from '../../lib/dashboard/state';
import { SCRIPT_HASH, renderPage } from '../../lib/dashboard/page';
import { authorizeSigner } from '../../lib/node/auth';
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
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=|https?:\/\//);
    expect(SCRIPT_HASH).toMatch(/^sha256-[A-Za-z0-9+/]+=*$/);
  });
});

describe('node signer authorization', () => {
  it('lets the coordinator call anything and the dashboard only read key descriptions', () => {
    expect(() => authorizeSigner('coordinator', 'GET', '/fragment')).not.toThrow();
    expect(() => authorizeSigner('dashboard', 'GET', '/key')).not.toThrow();
    expect(() => authorizeSigner('dashboard', 'GET', '/keys')).not.toThrow();
    for (const [m, p] of [['GET', '/fragment'], ['PUT', '/fragment'], ['DELETE', '/fragment'], ['POST', '/sign/share']]) {
      expect(() => authorizeSigner('dashboard', m!, p!)).toThrow(expect.objectContaining({ code: 'signer_not_allowed', status: 403 }));
    }
    expect(() => authorizeSigner('stranger', 'GET', '/keys')).toThrow();
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
