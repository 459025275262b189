/**
 * This node as a witness of the other components' audit chains (lib/audit/checkpoint.ts): it
 * countersigns a checkpoint signed by its origin (a peer node, checked against the membership,
 * or the coordinator, checked against its configured key) and keeps it in its own storage,
 * sealed under its own wrapping key, one document per chain with the earlier heads it saw.
 * It refuses a checkpoint that shortens a chain or gives one length two heads. Witnessing
 * writes no audit record: the kept copy is the record, and a witness must never call back.
 */
import * as z from '../zod.js';
import { checkpointConflict, checkpointStatement, originOfStream, witnessed, type SignedCheckpoint, type WitnessedCheckpoint } from '../audit/checkpoint.js';
import { verifyStatement } from '../crypto/identity.js';
import { BadRequestError, ConflictError, ForbiddenError } from '../errors.js';
import type { FragmentStore } from '../ports.js';
import type { NodeAccess } from './access.js';

const HEX64 = /^[0-9a-f]{64}$/;
const checkpointSchema = z.strictObject({
  origin: z.string().check(z.maxLength(64)),
  stream: z.string().check(z.minLength(1), z.maxLength(200)),
  length: z.number().check(z.int(), z.gte(1)),
  head: z.string().check(z.regex(HEX64)),
  time: z.string().check(z.maxLength(40)),
});
export const signedCheckpointSchema = z.strictObject({ checkpoint: checkpointSchema, signature: z.string().check(z.maxLength(200)) });
const historySchema = z.array(z.strictObject({ length: z.number(), head: z.string(), time: z.string() }));
export const witnessedSchema = z.strictObject({
  checkpoint: checkpointSchema,
  signature: z.string(),
  witness: z.string(),
  witnessedAt: z.string(),
  cosignature: z.string(),
  history: historySchema,
});

export interface WitnessDeps {
  nodeId: string;
  access: NodeAccess;
  store: Pick<FragmentStore, 'listDocs'>;
  sign: (statement: unknown) => string;
  /** Identity keys of the components this node witnesses: peer node ids and `coordinator` (base64). */
  keys: () => Promise<ReadonlyMap<string, string>>;
  now?: () => Date;
}

const docName = (stream: string) => Buffer.from(stream, 'utf8').toString('hex');

export class NodeWitness {
  constructor(private readonly d: WitnessDeps) {}

  /** Countersign and keep `input`, sent by `signer` (`coordinator` or `node:<id>`), which must be its origin. */
  async witness(input: unknown, signer: string): Promise<{ witness: string; witnessedAt: string; cosignature: string; length: number }> {
    const p = signedCheckpointSchema.safeParse(input);
    if (!p.success) throw new BadRequestError('invalid_checkpoint', 'expected a signed checkpoint {checkpoint, signature}');
    const s: SignedCheckpoint = p.data;
    const c = s.checkpoint;
    const sender = signer === 'coordinator' ? 'coordinator' : signer.replace(/^node:/, '');
    if (c.origin !== sender || originOfStream(c.stream) !== c.origin) throw new ForbiddenError('checkpoint_not_yours', `${signer} may checkpoint only its own chains`);
    if (c.origin === this.d.nodeId) throw new BadRequestError('invalid_checkpoint', 'a node does not witness its own chains');
    const key = (await this.d.keys()).get(c.origin);
    if (!key || !verifyStatement(key, checkpointStatement(c), s.signature)) throw new ForbiddenError('checkpoint_unsigned', `the checkpoint is not signed by ${c.origin}`);
    const prev = await this.get(c.stream);
    const conflict = checkpointConflict(prev, c);
    if (conflict) throw new ConflictError('checkpoint_conflict', `refused: ${conflict}`);
    if (prev && prev.checkpoint.length === c.length) return { witness: prev.witness, witnessedAt: prev.witnessedAt, cosignature: prev.cosignature, length: c.length };
    const at = (this.d.now ?? (() => new Date()))().toISOString();
    const next = witnessed(prev, s, this.d.nodeId, at, this.d.sign);
    await this.d.access.writeDoc('witness', docName(c.stream), next);
    return { witness: next.witness, witnessedAt: next.witnessedAt, cosignature: next.cosignature, length: c.length };
  }

  private get(stream: string): Promise<WitnessedCheckpoint | undefined> {
    return this.d.access.readDoc('witness', docName(stream), witnessedSchema).then((w) => w ?? undefined);
  }

  /** Every chain's checkpoint this node keeps (a copy it cannot open is left out: it was not written by this node). */
  async list(): Promise<WitnessedCheckpoint[]> {
    const names = await this.d.store.listDocs('witness');
    const out: WitnessedCheckpoint[] = [];
    for (let i = 0; i < names.length; i += 16) {
      const batch = await Promise.all(names.slice(i, i + 16).map((n) => this.d.access.readDoc('witness', n, witnessedSchema).catch(() => null)));
      for (const w of batch) if (w) out.push(w);
    }
    return out;
  }
}
