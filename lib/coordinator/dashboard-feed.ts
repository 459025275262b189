/**
 * What the coordinator serves the dashboard function: the dashboard's state document and
 * a place to record refused dashboard sign-ins. The dashboard holds no AWS permission
 * and no node access: it signs these two calls with its own Ed25519 key, and this is the
 * only place that key is accepted (lib/access/service-auth.ts).
 */
import * as z from '../zod.js';
import { authenticateServiceRequest } from '../access/service-auth.js';
import { recordRefusal } from '../audit/refusal.js';
import { canonicalJson, sha256Hex } from '../crypto/hash.js';
import { changedFindings, FINDING_ACTION, lookAtFederation, type AuditReader, type DashboardState, type FederationReader, type FindingChange } from '../dashboard/state.js';
import { UnauthorizedError } from '../errors.js';
import type { HttpRequest } from '../http/api.js';
import { parseInput } from '../http/api.js';
import type { AuditLog, AuditRecord, ReplayGuard } from '../ports.js';

/** The audit stream refused dashboard sign-ins are recorded in (written here, reported by the dashboard). */
export const DASHBOARD_STREAM = 'dashboard';
export const DASHBOARD_SIGNER = 'dashboard';
/**
 * A finding's record is claimed once per change (the previous record it follows) in this
 * window: concurrent polls record it once, and a record whose write failed after its claim
 * is tried again in the next window rather than never.
 */
export const FINDING_WINDOW_MS = 10 * 60_000;

export const refusalReportSchema = z
  .strictObject({
    code: z.string().check(z.regex(/^[a-z_]{1,40}$/)),
    method: z.string().check(z.regex(/^[A-Z]{1,10}$/)),
    path: z.string().check(z.maxLength(200)),
    sourceIp: z.optional(z.string().check(z.maxLength(64))),
  });

export interface DashboardFeedDeps {
  federation: FederationReader;
  audit: AuditLog & AuditReader;
  replay: ReplayGuard;
  /** The dashboard's verification key; without it every dashboard call is refused. */
  dashboardPublicKey: Uint8Array | undefined;
  threshold: number;
  nodeIds: string[];
  maxKeys: number;
  maxAuditItems: number;
  maxSkewS: number;
  /** Where the coordinator records refusals of its own (wrong or unknown signer). */
  ownStream: string;
}

export class DashboardFeed {
  constructor(private readonly d: DashboardFeedDeps) {}

  /** Only the dashboard's key, addressed to the coordinator, fresh and never replayed. Refusals are audited. */
  async authenticate(req: HttpRequest): Promise<void> {
    try {
      await authenticateServiceRequest(
        { method: req.method, path: req.rawPath, query: req.query, body: req.rawBody, headers: req.headers },
        { audience: 'coordinator', signers: { [DASHBOARD_SIGNER]: this.d.dashboardPublicKey }, replayScope: 'coordinator', maxSkewS: this.d.maxSkewS, replay: this.d.replay },
      );
    } catch (e) {
      await recordRefusal(this.d.audit, this.d.ownStream, e, { method: req.method, path: req.rawPath, sourceIp: req.sourceIp });
      throw e;
    }
  }

  /**
   * The dashboard's state document. Looking writes no audit record; what the look found
   * about a fragment (tampered, or clean again) is recorded when it differs from the last
   * record of that node and key, so a poll that finds nothing new adds nothing.
   */
  async state(now = Date.now()): Promise<DashboardState> {
    const { state, records } = await lookAtFederation({
      federation: this.d.federation,
      audit: this.d.audit,
      threshold: this.d.threshold,
      nodeIds: this.d.nodeIds,
      maxKeys: this.d.maxKeys,
      maxAuditItems: this.d.maxAuditItems,
    });
    // Needs the trail: a partial read may miss a finding's last record, which costs at most one repeat per window.
    if (state.audit.ok) await Promise.all(changedFindings(state.keys.items, records).map((c) => this.recordFinding(c, now)));
    return state;
  }

  /**
   * One record per change, however many polls see it at once: the record is claimed first,
   * in the replay table, by node, key, new status and the record it follows (durable, one
   * conditional write, and nothing kept in this instance's memory). Best effort: the state
   * is served either way, and an unrecorded change is seen again by the next poll.
   */
  private async recordFinding({ finding, previous }: FindingChange, now: number): Promise<void> {
    const change = sha256Hex(canonicalJson({ node: finding.nodeId, key: finding.keyId, status: finding.status, after: previous?.hash ?? null }));
    const window = Math.floor(now / FINDING_WINDOW_MS);
    try {
      if (!(await this.d.replay.claim('coordinator', `finding:${change}:${window}`, Math.ceil((now + 2 * FINDING_WINDOW_MS) / 1000)))) return;
      const tampered = finding.status !== 'clean';
      await this.d.audit.append(this.d.ownStream, {
        actor: `signer:${DASHBOARD_SIGNER}`,
        action: FINDING_ACTION,
        keyId: finding.keyId,
        outcome: tampered ? 'failure' : 'success',
        details: {
          nodeId: finding.nodeId,
          status: finding.status,
          previous: typeof previous?.details?.['status'] === 'string' ? previous.details['status'] : 'clean',
          ...(finding.version !== undefined ? { version: finding.version } : {}),
          nodes: [{ nodeId: finding.nodeId, status: tampered ? finding.status : 'valid' }],
        },
      });
    } catch {
      // Swallowed on purpose: looking must not fail because recording a finding did.
    }
  }

  /** A sign-in the dashboard refused (wrong viewer token), in the `dashboard` audit stream. */
  async recordRefusal(body: unknown): Promise<{ recorded: true }> {
    const r = parseInput(refusalReportSchema, body);
    await recordRefusal(this.d.audit, DASHBOARD_STREAM, new UnauthorizedError(r.code, 'refused by the dashboard'), r);
    return { recorded: true };
  }
}
