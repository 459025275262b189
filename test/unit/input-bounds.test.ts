/**
 * Input bounds at the HTTP edge (JSON depth before parsing, strict UTF-8, percent escapes),
 * strict base64, and aggregated refusal records (issue #13).
 */
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { httpApi } from '../../lib/http/api';
import { MAX_JSON_DEPTH, fromB64, isStrictB64, jsonDepthWithin, toB64 } from '../../lib/encoding';
import * as z from '../../lib/zod';
import { REFUSAL_WINDOW_MS, flushRefusals, recordRefusal } from '../../lib/audit/refusal';
import { ForbiddenError, UnauthorizedError } from '../../lib/errors';
import { MemoryAudit } from '../support/fakes';

const event = (body: string | Buffer, opts: { path?: string; pathParameters?: Record<string, string>; base64?: boolean } = {}): APIGatewayProxyEventV2 =>
  ({
    rawPath: opts.path ?? '/keys',
    headers: { 'content-type': 'application/json' },
    requestContext: { http: { method: 'POST', sourceIp: '192.0.2.1' }, requestId: 'r1' },
    body: Buffer.isBuffer(body) ? body.toString('base64') : body,
    isBase64Encoded: Buffer.isBuffer(body) || !!opts.base64,
    pathParameters: opts.pathParameters,
  }) as unknown as APIGatewayProxyEventV2;

const ctx = { getRemainingTimeInMillis: () => 5000, awsRequestId: 'a1' } as unknown as Context;

describe('the HTTP edge bounds input before anything recursive runs', () => {
  let reached = 0;
  const handler = httpApi({
    service: 'test',
    routeOf: (req) => `${req.method} ${req.rawPath.replace(/^\/keys\/[^/]+/, '/keys/{keyId}')}`,
    routes: {
      'POST /keys': async (req) => {
        reached++;
        return { ok: true, body: req.body };
      },
      'POST /keys/{keyId}/sign': async (req) => ({ keyId: req.pathParams['keyId'] }),
    },
  });
  const send = async (e: APIGatewayProxyEventV2) => {
    const r = (await handler(e, ctx)) as { statusCode: number; body: string };
    return { status: r.statusCode, code: JSON.parse(r.body)?.error?.code as string | undefined };
  };

  it.each([
    ['20,000-deep array', '['.repeat(20_000) + ']'.repeat(20_000), 'json_too_deep'],
    ['10,000-deep object', '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000), 'json_too_deep'],
    [`${MAX_JSON_DEPTH + 1} levels`, '['.repeat(MAX_JSON_DEPTH + 1) + ']'.repeat(MAX_JSON_DEPTH + 1), 'json_too_deep'],
    ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0xff, 0x22, 0x7d]), 'invalid_encoding'],
    ['truncated JSON', '{"a":', 'invalid_json'],
  ])('%s: 400 %s, and the route never runs', async (_name, body, code) => {
    const before = reached;
    expect(await send(event(body))).toEqual({ status: 400, code });
    expect(reached).toBe(before);
  });

  it(`accepts ${MAX_JSON_DEPTH} levels, and brackets inside strings do not count`, async () => {
    expect((await send(event('['.repeat(MAX_JSON_DEPTH) + ']'.repeat(MAX_JSON_DEPTH)))).status).toBe(200);
    expect((await send(event(JSON.stringify({ s: '['.repeat(10_000) + '"\\' })))).status).toBe(200);
  });

  it('a malformed percent escape in a path parameter is a 400, not a 500', async () => {
    expect(await send(event('{}', { path: '/keys/%E0%A4%A/sign', pathParameters: { keyId: '%E0%A4%A' } }))).toEqual({ status: 400, code: 'invalid_path' });
  });

  it('jsonDepthWithin is linear and skips escaped quotes', () => {
    expect(jsonDepthWithin('{"a":"\\"[[[[","b":[[1]]}', 3)).toBe(true);
    expect(jsonDepthWithin('{"b":[[1]]}', 2)).toBe(false);
    expect(jsonDepthWithin('['.repeat(1_000_000), 64)).toBe(false);
  });
});

describe('strict base64', () => {
  it.each([
    ['base64url alphabet', Buffer.from([0xfb, 0xff, 0xbf]).toString('base64url')],
    ['missing padding', 'AQIDBA'],
    ['non-zero padding bits', 'AQIDBB=='],
    ['whitespace', 'AQID BA=='],
    ['too much padding', 'AQID===='],
  ])('refuses %s', (_name, s) => {
    expect(isStrictB64(s)).toBe(false);
    expect(() => fromB64(s)).toThrow(expect.objectContaining({ code: 'invalid_encoding' }));
    expect(z.strictBase64().safeParse(s).success).toBe(false);
  });

  it('accepts canonical standard base64 of every length', () => {
    for (let n = 0; n < 10; n++) {
      const b = Uint8Array.from({ length: n }, (_, i) => 0xf0 + i);
      expect(fromB64(toB64(b))).toEqual(b);
      expect(z.strictBase64().safeParse(toB64(b)).success).toBe(true);
    }
  });
});

describe('refusal records are aggregated per window', () => {
  afterEach(() => jest.useRealTimers());

  it(`a flood writes one record at once and one count per ${REFUSAL_WINDOW_MS / 1000} s window; every refusal is counted`, async () => {
    jest.useFakeTimers({ now: Date.parse('2026-01-01T00:00:00Z'), doNotFake: ['nextTick', 'setImmediate'] });
    const audit = new MemoryAudit();
    const ctx1 = { method: 'POST', path: '/keys/k1/sign', sourceIp: '198.51.100.7' };
    for (let i = 0; i < 500; i++) await recordRefusal(audit, 'reconstruct', new UnauthorizedError('auth_missing', 'x'), ctx1);
    expect(audit.records).toHaveLength(1);
    expect(audit.records[0]!.details).toEqual({ code: 'auth_missing', method: 'POST', path: '/keys/k1/sign', sourceIp: '198.51.100.7' });
    // Another reason is another tuple, written at once.
    await recordRefusal(audit, 'reconstruct', new ForbiddenError('not_authorized', 'x'), { ...ctx1, signer: 'client:eve' });
    expect(audit.records).toHaveLength(2);
    jest.setSystemTime(Date.now() + REFUSAL_WINDOW_MS);
    await recordRefusal(audit, 'reconstruct', new UnauthorizedError('auth_missing', 'x'), ctx1);
    const counts = audit.records.filter((r) => r.details?.['aggregated']);
    expect(counts).toHaveLength(1);
    expect(counts[0]!.details).toMatchObject({ code: 'auth_missing', count: 499, aggregated: true, windowStart: '2026-01-01T00:00:00.000Z' });
    // 502 refusals, 4 records: the two firsts, one count, the new window's first.
    expect(audit.records).toHaveLength(4);
    await flushRefusals(Date.now(), true);
  });

  it('distinct paths and sources beyond the tracked tuples share one overflow window', async () => {
    const audit = new MemoryAudit();
    for (let i = 0; i < 1000; i++) await recordRefusal(audit, 'node#node1', new UnauthorizedError('auth_missing', 'x'), { method: 'POST', path: `/random/${i}`, sourceIp: `10.0.${i >> 8}.${i & 255}` });
    expect(audit.records.length).toBeLessThanOrEqual(101);
    await flushRefusals(Date.now(), true);
    const counted = audit.records.reduce((n, r) => n + (typeof r.details?.['count'] === 'number' ? (r.details['count'] as number) : 1), 0);
    expect(counted).toBe(1000);
  });
});
