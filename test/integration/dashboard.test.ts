/**
 * The dashboard in a real browser (Debian's headless Chromium through playwright-core),
 * against the real local stack. A federation with two keys is used, one node is
 * stopped and one fragment tampered with, and the page, refreshing itself, must show
 * the node down, the quorum margins dropping, the reconstruction events and the tamper
 * event naming the node. Screenshots go to artifacts/. Then: refused sign-ins, the
 * dashboard's key (the coordinator's state route only, no node), correlation ids and metrics in the logs, and a
 * scan of the whole run's logs for key and share material.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { BrowserContext, Page } from 'playwright-core';
import type { LocalStack } from '../../tools/local-stack';
import { HEADERS, signRequest } from '../../lib/crypto/request-signing';
import { generateX25519 } from '../../lib/crypto/seal';
import { fromB64, toB64 } from '../../lib/encoding';
import { artifactPath, launchBrowser } from '../support/browser';
import { scanLogForSecrets } from '../support/log-scan';
import { call, readObject, statusOf, testStack, writeObject } from '../support/stack';

const EXAMPLE = 'A94F3D82C1B7E6F9';
const UI_TIMEOUT = 90_000;
let stack: LocalStack;
let browser: BrowserContext;
let page: Page;
const released: { name: string; bytes: Uint8Array }[] = [{ name: 'example key', bytes: Buffer.from(EXAMPLE, 'hex') }];

/** A request to a node signed with `key` under `signer` (what the coordinator or dashboard would send). */
function signedNodeRequest(nodeId: string, path: string, query: Record<string, string>, key: string, signer: string) {
  const timestamp = String(Date.now());
  const requestId = randomUUID();
  const signature = signRequest(fromB64(key), { method: 'GET', audience: nodeId, path, query, body: '', timestamp, requestId });
  const url = `${stack.proxies.get(nodeId)!.url}${path}?${new URLSearchParams(query)}`;
  const headers = { [HEADERS.signer]: signer, [HEADERS.signature]: signature, [HEADERS.timestamp]: timestamp, [HEADERS.requestId]: requestId };
  return () => fetch(url, { headers }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
}

/** A request to the coordinator's /federation routes signed with `key` as the dashboard (what the dashboard function sends). */
function signedCoordinatorRequest(path: string, key: string, payload?: unknown) {
  const method = payload === undefined ? 'GET' : 'POST';
  const body = payload === undefined ? '' : JSON.stringify(payload);
  const timestamp = String(Date.now());
  const requestId = randomUUID();
  const signature = signRequest(fromB64(key), { method, audience: 'coordinator', path, query: {}, body, timestamp, requestId });
  const headers = { 'content-type': 'application/json', [HEADERS.signer]: 'dashboard', [HEADERS.signature]: signature, [HEADERS.timestamp]: timestamp, [HEADERS.requestId]: requestId };
  return () => fetch(`${stack.url}${path}`, { method, headers, ...(body ? { body } : {}) }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
}

const viewerToken = () => stack.secrets['dashboard']!['viewerToken']!;
/** Every operator's sls offline log: each node and the coordinator log on their own. */
const allLogs = () => [...stack.units.values()].map((u) => { try { return readFileSync(u.logFile, 'utf8'); } catch { return ''; } }).join('\n');

beforeAll(async () => {
  stack = await testStack();
  expect((await call(stack, 'POST', '/keys', { body: { keyId: 'example', secretHex: EXAMPLE, policy: { serverSideCombine: true } } })).status).toBe(201);
  expect((await call(stack, 'POST', '/keys', { body: { keyId: 'db-master', length: 32, policy: { serverSideCombine: true } } })).status).toBe(201);
  const r = await call(stack, 'POST', '/keys/example/reconstruct');
  expect(r.status).toBe(200);
  const db = await call(stack, 'POST', '/keys/db-master/reconstruct');
  expect(db.status).toBe(200);
  released.push({ name: 'db-master key', bytes: fromB64(db.body.secret.base64) });
  // Security events for the log: a wrong API token, and a replayed node request.
  expect((await call(stack, 'GET', '/keys', { as: { name: 'mallory', privateKey: new Uint8Array(32).fill(7) } })).status).toBe(401);
  const send = signedNodeRequest('node1', '/fragment', { keyId: 'example', recipient: toB64(generateX25519().publicKey) }, stack.secrets['coordinator']!['privateKey']!, 'coordinator');
  // The coordinator's signature alone gets no fragment (no client asked), and cannot be replayed.
  expect((await send()).body.error.code).toBe('client_auth_missing');
  expect((await send()).body.error.code).toBe('request_replayed');
  browser = await launchBrowser({ httpCredentials: { username: 'operator', password: viewerToken() } });
  page = await browser.newPage();
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

const row = (selector: string) => page.locator(selector);
const waitFor = (selector: string) => row(selector).first().waitFor({ state: 'visible', timeout: UI_TIMEOUT });

describe('dashboard in a real browser', () => {
  it('shows a healthy federation: nodes up, full margins, the reconstruction and the refused requests', async () => {
    const res = await page.goto(`${stack.url}/dashboard`);
    expect(res?.status()).toBe(200);
    for (const id of ['node1', 'node2', 'node3']) await waitFor(`#nodes tr[data-node="${id}"][data-state="up"]`);
    await waitFor('#keys tr[data-key="example"][data-margin="1"]');
    await waitFor('#keys tr[data-key="db-master"][data-margin="1"]');
    await waitFor('#events tr[data-event="key.reconstruct"][data-key="example"][data-outcome="success"]');
    await waitFor('#events tr[data-event="key.import"][data-key="example"]');
    await waitFor('#events tr[data-event="key.generate"][data-key="db-master"]');
    await waitFor('#security tr[data-security="auth"]');
    await waitFor('#security tr[data-security="replay"][data-node="node1"]');
    await waitFor('#components tr[data-component="reconstruct"][data-ok="true"]');
    // Each component's last witnessed checkpoint, with its age and witnesses.
    await waitFor('#checkpoints tr[data-checkpoint="reconstruct"]');
    await waitFor('#checkpoints tr[data-checkpoint="node#node1"]');
    expect(await row('#nodes tr[data-node="node1"]').innerText()).toMatch(/UP\s+[\d.]+ ms\s+just now|UP\s+[\d.]+ ms\s+\d+ s ago/);
    expect(await row('#nodes tr[data-node="node1"]').innerText()).toContain('0.1.0');
    await page.screenshot({ path: artifactPath('dashboard-healthy.png'), fullPage: true });
  });

  it('shows a stopped node, the margins dropping, and the tampered fragment naming its node', async () => {
    await stack.setNode('node3', { kind: 'down' });
    const obj = JSON.parse(await readObject(stack, 'node2', 'keys/db-master/v1.json'));
    const ct = Buffer.from(obj.share.ct, 'base64');
    ct[0]! ^= 0x01;
    obj.share.ct = ct.toString('base64');
    await writeObject(stack, 'node2', 'keys/db-master/v1.json', JSON.stringify(obj));

    // The example key still works with node3 down; db-master no longer does.
    const ok = await call(stack, 'POST', '/keys/example/reconstruct');
    expect(ok.status).toBe(200);
    // Asked among the first t (named unreachable), or never asked at all (not needed).
    expect(['unreachable', 'cancelled']).toContain(statusOf(ok.body, 'node3'));
    const refused = await call(stack, 'POST', '/keys/db-master/reconstruct');
    expect(refused.status).toBe(503);
    expect(statusOf(refused.body, 'node2')).toBe('corrupted');

    // No reload: the page polls and must update itself.
    await waitFor('#nodes tr[data-node="node3"][data-state="down"]');
    await waitFor('#nodes tr[data-node="node1"][data-state="up"]');
    await waitFor('#keys tr[data-key="example"][data-margin="0"]');
    await waitFor('#keys tr[data-key="db-master"][data-margin="-1"]');
    expect(await row('#keys tr[data-key="example"] td.margin').getAttribute('class')).toContain('bad');
    expect(await row('#keys tr[data-key="example"] span.chip[data-node="node3"]').getAttribute('data-status')).toBe('unreachable');
    expect(await row('#keys tr[data-key="db-master"] span.chip[data-node="node2"]').getAttribute('data-status')).toBe('corrupted');
    await waitFor('#events tr[data-event="key.reconstruct"][data-key="db-master"][data-outcome="failure"]');
    expect(await row('#events tr[data-event="key.reconstruct"][data-key="db-master"]').first().innerText()).toMatch(/node2: corrupted/);
    expect(await row('#events tr[data-event="key.reconstruct"][data-key="example"][data-outcome="success"]').count()).toBeGreaterThanOrEqual(2);
    await waitFor('#security tr[data-security="tamper"][data-node="node2"][data-key="db-master"]');
    expect(await row('#security tr[data-security="tamper"][data-node="node2"]').first().innerText()).toMatch(/node2/);
    expect(await row('#nodes tr[data-node="node3"]').innerText()).toMatch(/DOWN/);
    await page.screenshot({ path: artifactPath('dashboard-failure.png'), fullPage: true });
    await stack.setNode('node3', { kind: 'up' });
  });

  it('never puts a secret in the page or its data', async () => {
    const html = await page.content();
    const state = await page.evaluate(async (u) => (await fetch(u)).text(), `${stack.url}/dashboard/api/state`);
    for (const text of [html, state]) {
      expect(text).not.toMatch(new RegExp(EXAMPLE, 'i'));
      expect(text).not.toContain(stack.secrets['admin']!['privateKey']!);
      expect(text).not.toContain(viewerToken());
      expect(text).not.toMatch(/signingShare|wrapKey|privateKey/);
    }
  });
});

describe('dashboard access', () => {
  it('asks a browser to sign in, and refuses the API token and wrong passwords', async () => {
    const none = await fetch(`${stack.url}/dashboard`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic realm="fedkms dashboard"/);
    const basic = (pw: string) => ({ authorization: `Basic ${Buffer.from(`operator:${pw}`).toString('base64')}` });
    expect((await fetch(`${stack.url}/dashboard/api/state`, { headers: basic(stack.secrets['admin']!['privateKey']!) })).status).toBe(401);
    expect((await fetch(`${stack.url}/dashboard/api/state`, { headers: basic('wrong') })).status).toBe(401);
    const bearer = await fetch(`${stack.url}/dashboard/api/state`, { headers: { authorization: `Bearer ${viewerToken()}` } });
    expect(bearer.status).toBe(200);
    const page = await fetch(`${stack.url}/dashboard`, { headers: basic(viewerToken()) });
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'sha256-/);
  });

  it("the dashboard's key opens the dashboard state on the coordinator, once per request, and nothing on a node", async () => {
    const key = stack.secrets['dashboard']!['privateKey']!;
    // No node knows the dashboard's key: not even a key description (refusal audited by the node).
    const read = await signedNodeRequest('node1', '/key', { keyId: 'example' }, key, 'dashboard')();
    expect(read.status).toBe(401);
    expect(read.body.error.code).toBe('signer_unknown');
    // Relabelling a dashboard-signed request as the coordinator's does not verify.
    const relabelled = await signedNodeRequest('node1', '/fragment', { keyId: 'example', recipient: toB64(generateX25519().publicKey) }, key, 'coordinator')();
    expect(relabelled.status).toBe(401);
    expect(relabelled.body.error.code).toBe('signature_invalid');
    // On the coordinator: the signed state call works once; its replay, an unsigned call and another key are refused.
    const send = signedCoordinatorRequest('/federation/state', key);
    const first = await send();
    expect(first.status).toBe(200);
    expect(first.body.federation.threshold).toBe(2);
    expect((await send()).body.error.code).toBe('request_replayed');
    expect((await fetch(`${stack.url}/federation/state`)).status).toBe(401);
    expect((await signedCoordinatorRequest('/federation/state', stack.secrets['coordinator']!['privateKey']!)()).body.error.code).toBe('signature_invalid');
    // A refusal report must be well formed, even from the dashboard's own key.
    const malformed = await signedCoordinatorRequest('/federation/refusals', key, { code: 'auth_invalid', method: 'GET', path: '/x', note: 'extra' })();
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe('invalid_input');
    expect(JSON.stringify(malformed.body)).not.toMatch(/at .*\.ts|stack/);
    const recorded = await signedCoordinatorRequest('/federation/refusals', key, { code: 'auth_invalid', method: 'GET', path: '/dashboard/probe' })();
    expect(recorded).toEqual({ status: 200, body: { recorded: true } });
    const state = await fetch(`${stack.url}/dashboard/api/state`, { headers: { authorization: `Bearer ${viewerToken()}` } }).then((r) => r.json() as Promise<any>);
    expect(state.security).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'auth', nodeId: 'node1' })]));
    // The wrong passwords above, refused by the dashboard and audited through the coordinator.
    expect(state.security).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'auth', component: 'dashboard', detail: expect.stringMatching(/auth_invalid GET \/dashboard\/api\/state/) })]));
    expect(state.security).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'replay', component: 'reconstruct' })]));
    expect(state.audit.verified).toBe(true);
  });
});

describe('logs and metrics', () => {
  it('follows a correlation id from the coordinator into every node it called', async () => {
    const id = `it-${randomUUID()}`;
    const r = await call(stack, 'POST', '/keys/example/reconstruct', { headers: { 'x-fedkms-correlation-id': id } });
    expect(r.status).toBe(200);
    const services = () =>
      allLogs()
        .split('\n')
        .filter((l) => l.includes(`"correlation_id":"${id}"`))
        .map((l) => JSON.parse(l.slice(l.indexOf('{'))) as { service: string; function_name: string });
    const nodesReached = (r.body.nodes as { nodeId: string; status: string }[]).filter((n) => n.status === 'valid').map((n) => n.nodeId);
    // Each node is its own stack (service fedkms-<id>), logging in its own sls offline.
    const expected = (fns: Set<string>) => [...fns].some((f) => f.endsWith('-reconstruct')) && nodesReached.every((n) => fns.has(`fedkms-${n}-local-${n}`));
    // The log is written by another process, and the coordinator logs after its nodes:
    // wait until every line the assertions need is there, not for a time or a count.
    for (let i = 0; i < 100 && !expected(new Set(services().map((s) => s.function_name))); i++) await new Promise((res) => setTimeout(res, 100));
    const fns = new Set(services().map((s) => s.function_name));
    expect([...fns].some((f) => f.endsWith('-reconstruct'))).toBe(true);
    for (const n of nodesReached) expect(fns).toContain(`fedkms-${n}-local-${n}`);
    // A malformed correlation id is replaced, never logged as given.
    await call(stack, 'GET', '/status', { headers: { 'x-fedkms-correlation-id': 'bad id with spaces"}' } });
  });

  it('emits EMF metrics for operations, per-node failures and latency, tampering and auth events', () => {
    const emf = allLogs()
      .split('\n')
      .filter((l) => l.includes('"_aws"'))
      .map((l) => JSON.parse(l.slice(l.indexOf('{'))) as Record<string, any>);
    const has = (name: string, dims: Record<string, string> = {}) =>
      emf.some((m) => m[name] !== undefined && m._aws.CloudWatchMetrics[0].Namespace === 'fedkms' && Object.entries(dims).every(([k, v]) => m[k] === v));
    expect(has('Requests', { service: 'fedkms-reconstruct', route: 'POST /keys/{keyId}/reconstruct' })).toBe(true);
    expect(has('Latency')).toBe(true);
    expect(has('NodeLatency', { node: 'node1' })).toBe(true);
    expect(has('NodeFailures', { node: 'node3', status: 'unreachable' })).toBe(true);
    expect(has('TamperDetected', { node: 'node2', kind: 'corrupted' })).toBe(true);
    expect(has('AuthFailures', { code: 'auth_invalid' })).toBe(true);
    expect(has('ReplayRejected', { code: 'request_replayed' })).toBe(true);
    expect(allLogs()).not.toContain('bad id with spaces');
  });

  it('leaves no key or share material anywhere in the logs of the whole run', async () => {
    const gen = await call(stack, 'POST', '/keys/example/reconstruct');
    expect(gen.status).toBe(200);
    const scan = await scanLogForSecrets(stack, released);
    expect(scan.shares).toBeGreaterThanOrEqual(5); // 2 keys x 3 nodes, minus the tampered fragment
    expect(scan.lines).toBeGreaterThan(100);
    expect(scan.leaks).toEqual([]);
  });
});
