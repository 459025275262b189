/**
 * NodeService and Coordinator with in-memory ports and an in-process "network":
 * the fail-closed rules and the cheater naming, independent of AWS.
 */
import { NodeService, type ImportRequest } from '../../lib/node/service';
import { Coordinator } from '../../lib/coordinator/service';
import { NodeClient, type Fetch } from '../../lib/coordinator/node-client';
import { identifierFor } from '../../lib/crypto/shares';
import { generateX25519 } from '../../lib/crypto/seal';
import { toB64, fromB64 } from '../../lib/encoding';
import { generateSigningKey } from '../../lib/crypto/request-signing';
import { AuditUnavailableError, FragmentCorruptedError } from '../../lib/errors';
import { MemoryAudit, MemoryStore } from '../support/fakes';
import type { NodeEndpoint } from '../../lib/runtime-config';

interface FakeNode {
  endpoint: NodeEndpoint;
  service: NodeService;
  store: MemoryStore;
  audit: MemoryAudit;
  /** Replace the node's answer to GET /fragment (a lying node). */
  lie?: (answer: any) => any;
}

function federation(n: number) {
  const nodes: FakeNode[] = Array.from({ length: n }, (_, i) => {
    const x = generateX25519();
    const store = new MemoryStore();
    const audit = new MemoryAudit();
    const id = `node${i + 1}`;
    return {
      endpoint: { id, index: i + 1, url: `http://fake/${id}`, x25519Public: toB64(x.publicKey), signingPublic: '' },
      service: new NodeService({ nodeId: id, identifier: identifierFor(i + 1), wrapKey: new Uint8Array(32).fill(i + 1), x25519Private: x.privateKey, version: 'test' }, { store, audit }),
      store,
      audit,
    };
  });
  // A fetch that routes to the in-memory services (authentication is covered elsewhere).
  const fakeFetch: Fetch = async (input, init) => {
    const url = new URL(String(input));
    const node = nodes.find((x) => url.pathname.startsWith(`/${x.endpoint.id}/`))!;
    const route = `${init?.method} ${url.pathname.slice(node.endpoint.id.length + 1)}`;
    const q = Object.fromEntries(url.searchParams);
    try {
      let body: unknown;
      if (route === 'PUT /fragment') body = await node.service.importShare(JSON.parse(String(init?.body)) as ImportRequest, 'coordinator');
      else if (route === 'GET /fragment') {
        body = await node.service.fragment(q['keyId']!, fromB64(q['recipient']!), 'coordinator');
        if (node.lie) body = node.lie(body);
      } else if (route === 'DELETE /fragment') body = await node.service.deleteVersion(q['keyId']!, Number(q['version']), 'coordinator');
      else throw new Error(`no route ${route}`);
      return new Response(JSON.stringify(body), { status: 200 });
    } catch (e) {
      const err = e as { status?: number; code?: string };
      return new Response(JSON.stringify({ error: { code: err.code ?? 'internal_error' } }), { status: err.status ?? 500 });
    }
  };
  const audit = new MemoryAudit();
  const coordinator = new Coordinator({ nodes: nodes.map((x) => x.endpoint), threshold: 2, timeoutMs: 1000, client: new NodeClient(generateSigningKey().privateKey, fakeFetch), audit });
  return { nodes, coordinator, audit };
}

describe('Coordinator and NodeService', () => {
  it('imports, reconstructs, and audits both sides', async () => {
    const f = federation(3);
    await f.coordinator.createKey({ keyId: 'k', secretHex: 'a94f3d82c1b7e6f9' }, 'tester');
    const r: any = await f.coordinator.reconstruct('k', {}, 'tester');
    expect(r.secret.hex).toBe('a94f3d82c1b7e6f9');
    expect(f.audit.records.map((x) => x.action)).toEqual(['key.import', 'key.reconstruct']);
    expect(f.nodes.every((n) => n.audit.records.some((x) => x.action === 'fragment.store'))).toBe(true);
  });

  it('fails closed: the coordinator releases nothing when its audit write fails', async () => {
    const f = federation(3);
    await f.coordinator.createKey({ keyId: 'k', secretHex: 'aabb' }, 'tester');
    f.audit.failing = true;
    await expect(f.coordinator.reconstruct('k', {}, 'tester')).rejects.toBeInstanceOf(AuditUnavailableError);
  });

  it('fails closed: a node releases no fragment when its audit write fails', async () => {
    const f = federation(3);
    await f.coordinator.createKey({ keyId: 'k', secretHex: 'aabb' }, 'tester');
    f.nodes[0]!.audit.failing = true;
    await expect(f.nodes[0]!.service.fragment('k', generateX25519().publicKey, 'x')).rejects.toBeInstanceOf(AuditUnavailableError);
  });

  it('names a lying node and still reconstructs from the honest ones', async () => {
    const f = federation(3);
    await f.coordinator.createKey({ keyId: 'k', secretHex: 'aabb' }, 'tester');
    // node1 re-seals someone else's answer: a share that is valid for node2, not for node1.
    f.nodes[0]!.lie = (a) => ({ ...a, sealedShare: { ...a.sealedShare, ct: toB64(fromB64(a.sealedShare.ct).map((b: number) => b ^ 1)) } });
    const r: any = await f.coordinator.reconstruct('k', {}, 'tester');
    expect(r.secret.hex).toBe('aabb');
    expect(r.nodes.find((n: { nodeId: string }) => n.nodeId === 'node1')?.status).toBe('invalid_share');
  });

  it('a node detects its own corrupted object and says so', async () => {
    const f = federation(3);
    await f.coordinator.createKey({ keyId: 'k', secretHex: 'aabb' }, 'tester');
    const [key, raw] = [...f.nodes[1]!.store.objects.entries()][0]!;
    // Flip the first character of the at-rest ciphertext.
    f.nodes[1]!.store.objects.set(key, raw.replace(/"ct":"(.)/, (_m, c: string) => `"ct":"${c === 'A' ? 'B' : 'A'}`));
    await expect(f.nodes[1]!.service.fragment('k', generateX25519().publicKey, 'x')).rejects.toBeInstanceOf(FragmentCorruptedError);
    expect(f.nodes[1]!.audit.records.at(-1)).toMatchObject({ action: 'fragment.integrity', outcome: 'failure' });
  });

  it('rolls back an import that not every node accepted, and reports the conflict', async () => {
    const f = federation(3);
    await f.nodes[2]!.store.create('k', 1, '{}'); // node3 already holds something at k v1
    await expect(f.coordinator.createKey({ keyId: 'k', secretHex: 'aabb' }, 'tester')).rejects.toMatchObject({ code: 'key_exists' });
    expect(await f.nodes[0]!.store.versions('k')).toEqual([]);
    expect(await f.nodes[1]!.store.versions('k')).toEqual([]);
    expect(await f.nodes[2]!.store.versions('k')).toEqual([1]);
  });

  it('a node refuses a share that does not match the commitments', async () => {
    const f = federation(3);
    let captured: ImportRequest | undefined;
    const original = f.nodes[0]!.service.importShare.bind(f.nodes[0]!.service);
    f.nodes[0]!.service.importShare = async (req, actor) => {
      captured = req;
      return original(req, actor);
    };
    await f.coordinator.createKey({ keyId: 'k', secretHex: 'aabb' }, 'tester');
    // Same sealed share, but presented under another key's commitments.
    const other = federation(3);
    await other.coordinator.createKey({ keyId: 'k', secretHex: 'ccdd' }, 'tester');
    const foreign = JSON.parse([...other.nodes[0]!.store.objects.values()][0]!).descriptor;
    await f.nodes[0]!.store.delete('k', 1);
    await expect(f.nodes[0]!.service.importShare({ ...captured!, descriptor: foreign }, 'x')).rejects.toMatchObject({ code: 'invalid_share' });
  });
});
