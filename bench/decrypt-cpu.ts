/**
 * The in-process half of `npm run bench:decrypt` (bench/decrypt.ts): CPU per operation, no
 * network, in one process and one run, of
 *   - the client side of one threshold decryption: the SDK's own `decryptEndToEnd`
 *     (lib/client/decrypt.ts) with a FedkmsClient whose fetch answers in-process, so request
 *     signing, JSON, opening t sealed partials, checking the envelope and every DLEQ proof,
 *     combining and the AEAD are all counted; what the stand-in transport computes for the
 *     nodes (their partials, proofs and sealing) is timed apart and subtracted;
 *   - one node's partial decryption and proof (`partialDecrypt`: the envelope's validity proof,
 *     the share check, D_i = s_i·R, the DLEQ proof), and the same plus sealing it to the client;
 *   - two baselines: an AES-256-GCM unwrap of a 32-byte data key (a local KEK) and one X25519
 *     ECDH (Node crypto, keys imported once).
 * Run as an esbuild bundle by bench/decrypt.ts, as bench/frost-cpu.ts does (under tsx noble is
 * transpiled to CommonJS and runs slower than in the bundle the functions are deployed as);
 * with DECRYPT_CPU_CHILD set it prints its result as one JSON line.
 */
import { createCipheriv, createDecipheriv, diffieHellman, generateKeyPairSync, randomBytes } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { FedkmsClient } from '../lib/client/api.js';
import { decryptEndToEnd } from '../lib/client/decrypt.js';
import { CLIENT_HEADERS } from '../lib/crypto/client-auth.js';
import { generateX25519, seal } from '../lib/crypto/seal.js';
import { dealKey, identifierFor, type Share } from '../lib/crypto/shares.js';
import { ciphertextDigest, encrypt, encryptionKeyFromPublicPackage, partialDecrypt, SCHEME, type EncryptionPublicKey } from '../lib/crypto/threshold-decrypt.js';
import { fromB64, toB64 } from '../lib/encoding.js';
import { partialAad } from '../lib/node/decrypt.js';

export const CPU_CHILD_ENV = 'DECRYPT_CPU_CHILD';

/** Warm-ups and measured operations per row; a threshold operation costs milliseconds, a baseline microseconds. */
export const CPU_RUNS = { threshold: { warmup: 20, iterations: 200 }, baseline: { warmup: 2000, iterations: 20000 } } as const;
const KEY_ID = 'bench-decrypt-cpu';
const CONTEXT = { app: 'bench', purpose: 'data-key' };

export interface CpuRow {
  what: string;
  cpuUs: number;
  wallUs: number;
  iterations: number;
}

export interface CpuResult {
  n: number;
  t: number;
  mode: string;
  node: string;
  rows: CpuRow[];
}

interface Timing {
  cpuUs: number;
  wallUs: number;
}

const cpuNowUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** CPU (user + system, whole process) and wall time per call of a synchronous `op`, after uncounted warm-ups. */
function perOp(warmup: number, iterations: number, op: () => unknown): Timing {
  for (let i = 0; i < warmup; i++) op();
  const wall = performance.now();
  const cpu = cpuNowUs();
  for (let i = 0; i < iterations; i++) op();
  return { cpuUs: (cpuNowUs() - cpu) / iterations, wallUs: ((performance.now() - wall) * 1000) / iterations };
}

/** The same for an asynchronous `op`, less what `excluded` counts (work done on the far side of a stand-in transport). */
async function perOpAsync(warmup: number, iterations: number, op: () => Promise<unknown>, excluded: () => Timing): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await op();
  const excluded0 = excluded();
  const wall = performance.now();
  const cpu = cpuNowUs();
  for (let i = 0; i < iterations; i++) await op();
  const cpuUs = cpuNowUs() - cpu - (excluded().cpuUs - excluded0.cpuUs);
  const wallUs = (performance.now() - wall) * 1000 - (excluded().wallUs - excluded0.wallUs);
  return { cpuUs: cpuUs / iterations, wallUs: wallUs / iterations };
}

/**
 * A fetch that plays coordinator and nodes in-process for `POST /keys/{id}/decrypt` and
 * `GET /keys/{id}/public`; its own CPU and wall time accumulate in `spent` (to be subtracted).
 */
function inProcessFederation(key: EncryptionPublicKey, shares: Share[], t: number) {
  const spent: Timing = { cpuUs: 0, wallUs: 0 };
  const nodeIds = shares.map((_, i) => `node${i + 1}`);
  const fetchImpl = (async (url: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const started = cpuNowUs();
    const startedWall = performance.now();
    const path = new URL(String(url)).pathname;
    let answer: unknown;
    if (init?.method === 'GET' && path === `/keys/${KEY_ID}/public`) {
      answer = { keyId: KEY_ID, version: 1, type: 'encrypt', scheme: SCHEME, threshold: key.threshold, groupKey: key.groupKey, verifyingShares: key.verifyingShares };
    } else if (init?.method === 'POST' && path === `/keys/${KEY_ID}/decrypt`) {
      const req = JSON.parse(String(init.body)) as { ciphertext: string; context: Record<string, string>; recipient: string };
      const requestId = (init.headers as Record<string, string>)[CLIENT_HEADERS.requestId]!;
      const envelope = fromB64(req.ciphertext);
      const digest = ciphertextDigest(envelope);
      const recipient = fromB64(req.recipient);
      // The first t nodes answer, as the coordinator relays the fastest t.
      const partials = shares.slice(0, t).map((share, i) => {
        const p = partialDecrypt({ key, share, envelope, context: req.context, request: { requester: req.recipient, requestId } });
        const sealed = seal(recipient, new TextEncoder().encode(JSON.stringify(p)), partialAad(KEY_ID, 1, nodeIds[i]!, share.identifier, digest));
        return { nodeId: nodeIds[i], identifier: share.identifier, keyId: KEY_ID, version: 1, threshold: t, sealed };
      });
      answer = { keyId: KEY_ID, version: 1, partials };
    } else {
      throw new Error(`in-process federation: unexpected ${init?.method} ${path}`);
    }
    const text = JSON.stringify(answer);
    spent.cpuUs += cpuNowUs() - started;
    spent.wallUs += (performance.now() - startedWall) * 1000;
    return new Response(text, { status: 200, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
  return { fetchImpl, spent: () => ({ ...spent }) };
}

/** Every row of the CPU table for a t-of-n key dealt in-process (same ristretto255 scalars as a DKG key). */
export async function measureDecryptCpu(n: number, t: number, mode: string): Promise<CpuResult> {
  const ids = Array.from({ length: n }, (_, i) => identifierFor(i + 1));
  const dealt = dealKey({ keyId: KEY_ID, threshold: t, identifiers: ids, secret: new Uint8Array([0]) });
  const key = encryptionKeyFromPublicPackage(KEY_ID, 1, dealt.publicPackage);
  const dataKey = new Uint8Array(randomBytes(32));
  const envelope = encrypt(key, dataKey, CONTEXT);
  const rows: CpuRow[] = [];
  const add = (what: string, iterations: number, r: Timing) => rows.push({ what, cpuUs: r.cpuUs, wallUs: r.wallUs, iterations });

  // Client side, through the SDK's real code path.
  const fed = inProcessFederation(key, dealt.shares, t);
  const client = new FedkmsClient('http://in-process.invalid', { name: 'bench', privateKey: ed25519.utils.randomSecretKey() }, fed.fetchImpl);
  const clientOp = async () => {
    const r = await decryptEndToEnd(client, envelope, CONTEXT);
    if (Buffer.compare(Buffer.from(r.plaintext), Buffer.from(dataKey)) !== 0 || r.rejected.length) throw new Error('in-process decryption returned the wrong data key');
  };
  add(`client side of one decryption (decryptEndToEnd, ${t} partials; node work subtracted)`, CPU_RUNS.threshold.iterations, await perOpAsync(CPU_RUNS.threshold.warmup, CPU_RUNS.threshold.iterations, clientOp, fed.spent));

  // One node.
  const share = dealt.shares[0]!;
  const recipient = generateX25519();
  const request = { requester: toB64(recipient.publicKey), requestId: 'bench-request' };
  const partialOnly = () => partialDecrypt({ key, share, envelope, context: CONTEXT, request });
  add('one node: partial + DLEQ proof (partialDecrypt, incl. envelope check)', CPU_RUNS.threshold.iterations, perOp(CPU_RUNS.threshold.warmup, CPU_RUNS.threshold.iterations, partialOnly));
  const digest = ciphertextDigest(envelope);
  const partialAndSeal = () => seal(recipient.publicKey, new TextEncoder().encode(JSON.stringify(partialOnly())), partialAad(KEY_ID, 1, 'node1', share.identifier, digest));
  add('one node: partial + DLEQ proof + sealing it to the client', CPU_RUNS.threshold.iterations, perOp(CPU_RUNS.threshold.warmup, CPU_RUNS.threshold.iterations, partialAndSeal));

  // Baselines: a local AES-256-GCM unwrap of a 32-byte data key, one X25519 ECDH.
  const kek = randomBytes(32);
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', kek, iv);
  const wrapped = Buffer.concat([c.update(dataKey), c.final()]);
  const tag = c.getAuthTag();
  const unwrap = () => {
    const d = createDecipheriv('aes-256-gcm', kek, iv);
    d.setAuthTag(tag);
    const out = Buffer.concat([d.update(wrapped), d.final()]);
    if (out.length !== 32) throw new Error('unwrap');
  };
  add('baseline: AES-256-GCM unwrap of a 32-byte data key (local KEK)', CPU_RUNS.baseline.iterations, perOp(CPU_RUNS.baseline.warmup, CPU_RUNS.baseline.iterations, unwrap));
  const a = generateKeyPairSync('x25519');
  const b = generateKeyPairSync('x25519');
  const ecdh = () => diffieHellman({ privateKey: a.privateKey, publicKey: b.publicKey });
  add('baseline: one X25519 ECDH (Node crypto, keys imported once)', CPU_RUNS.baseline.iterations, perOp(CPU_RUNS.baseline.warmup, CPU_RUNS.baseline.iterations, ecdh));
  return { n, t, mode, node: process.version, rows };
}

if (process.env[CPU_CHILD_ENV]) {
  const [n, t] = process.env[CPU_CHILD_ENV]!.split(',').map(Number) as [number, number];
  measureDecryptCpu(n, t, 'esbuild bundle, as deployed').then(
    (r) => console.log(JSON.stringify(r)),
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
