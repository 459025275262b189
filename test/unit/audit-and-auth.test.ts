import { GENESIS_HASH, nextRecord, verifyAll, verifyStream } from '../../lib/audit/chain';
import { authenticateServiceRequest } from '../../lib/access/service-auth';
import { generateSigningKey, HEADERS, signRequest } from '../../lib/crypto/request-signing';
import { UnauthorizedError } from '../../lib/errors';
import { MemoryReplay } from '../support/fakes';

describe('audit hash chain', () => {
  const chain = () => {
    const rs = [nextRecord('s', undefined, { actor: 'a', action: 'x', outcome: 'success' }, new Date(0))];
    for (let i = 0; i < 4; i++) rs.push(nextRecord('s', rs.at(-1), { actor: 'a', action: `x${i}`, outcome: 'success', details: { i } }, new Date(i)));
    return rs;
  };

  it('links each record to the one before', () => {
    const rs = chain();
    expect(rs[0]!.prevHash).toBe(GENESIS_HASH);
    expect(rs.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(verifyStream('s', rs)).toMatchObject({ ok: true, verifiedThrough: 5 });
  });

  it('names the first broken link: edited, deleted or reordered', () => {
    const edited = chain();
    edited[2] = { ...edited[2]!, actor: 'mallory' };
    expect(verifyStream('s', edited)).toMatchObject({ ok: false, verifiedThrough: 2, firstBroken: { seq: 3 } });
    const deleted = chain().filter((r) => r.seq !== 2);
    expect(verifyStream('s', deleted)).toMatchObject({ ok: false, verifiedThrough: 1, firstBroken: { seq: 3 } });
    const rehashed = chain();
    const { hash: _h, ...body } = rehashed[1]!;
    void _h;
    rehashed[1] = nextRecord('s', rehashed[0], { actor: 'mallory', action: body.action, outcome: 'success' }, new Date(1));
    expect(verifyStream('s', rehashed)).toMatchObject({ ok: false, firstBroken: { seq: 3, reason: 'prevHash does not match the previous record' } });
  });

  it('verifies every stream independently', () => {
    const a = chain();
    const b = [nextRecord('t', undefined, { actor: 'b', action: 'y', outcome: 'failure' }, new Date(0))];
    expect(verifyAll([...b, ...a])).toMatchObject({ ok: true, streams: [{ stream: 's' }, { stream: 't' }] });
  });
});

describe('node request authentication', () => {
  const { privateKey, publicKey } = generateSigningKey();
  const now = 1_700_000_000_000;
  const request = (overrides: { timestamp?: number; requestId?: string; path?: string } = {}) => {
    const timestamp = String(overrides.timestamp ?? now);
    const requestId = overrides.requestId ?? '0123456789abcdef0123';
    const sig = signRequest(privateKey, { method: 'GET', audience: 'node1', path: '/fragment', query: { keyId: 'k' }, body: '', timestamp, requestId });
    return {
      method: 'GET',
      path: overrides.path ?? '/fragment',
      query: { keyId: 'k' },
      body: '',
      headers: { [HEADERS.signature]: sig, [HEADERS.timestamp]: timestamp, [HEADERS.requestId]: requestId },
    };
  };
  const opts = (replay = new MemoryReplay(), audience = 'node1') => ({ audience, replayScope: audience, signers: { coordinator: publicKey }, defaultSigner: 'coordinator', maxSkewS: 60, replay, now });
  const code = async (p: Promise<unknown>) => p.then(() => 'ok', (e: UnauthorizedError) => e.code);

  it('accepts a fresh signed request once, then refuses the replay', async () => {
    const o = opts();
    expect(await code(authenticateServiceRequest(request(), o))).toBe('ok');
    expect(await code(authenticateServiceRequest(request(), o))).toBe('request_replayed');
  });

  it('refuses missing, stale, future, altered and wrongly-addressed requests', async () => {
    expect(await code(authenticateServiceRequest({ ...request(), headers: {} }, opts()))).toBe('signature_missing');
    expect(await code(authenticateServiceRequest(request({ timestamp: now - 61_000 }), opts()))).toBe('request_stale');
    expect(await code(authenticateServiceRequest(request({ timestamp: now + 61_000 }), opts()))).toBe('request_stale');
    expect(await code(authenticateServiceRequest(request({ path: '/keys' }), opts()))).toBe('signature_invalid');
    expect(await code(authenticateServiceRequest(request(), opts(new MemoryReplay(), 'node2')))).toBe('signature_invalid');
    expect(await code(authenticateServiceRequest(request({ requestId: 'short' }), opts()))).toBe('signature_invalid');
  });

  it('knows only the signers it is given: another key, or a relabelled request, is refused', async () => {
    const other = generateSigningKey();
    const dashboardSigned = request();
    const viaDashboard = { ...dashboardSigned, headers: { ...dashboardSigned.headers, [HEADERS.signer]: 'dashboard' } };
    expect(await code(authenticateServiceRequest(viaDashboard, opts()))).toBe('signer_unknown');
    const withDashboard = { ...opts(), signers: { dashboard: other.publicKey } };
    expect(await code(authenticateServiceRequest(viaDashboard, withDashboard))).toBe('signature_invalid');
    expect(await code(authenticateServiceRequest(request(), { ...withDashboard, defaultSigner: undefined }))).toBe('signer_unknown');
  });

  it('does not spend a replay slot on a bad signature', async () => {
    const replay = new MemoryReplay();
    await code(authenticateServiceRequest(request({ path: '/keys' }), opts(replay)));
    expect(replay.seen.size).toBe(0);
  });
});
