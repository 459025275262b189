/**
 * What the coordinator serves the dashboard function: the dashboard's state document and
 * a place to record refused dashboard sign-ins. The dashboard holds no AWS permission
 * and no node access: it signs these two calls with its own Ed25519 key, and this is the
 * only place that key is accepted (lib/access/service-auth.ts).
 */
import { z } from 'zod';
import { authenticateServiceRequest } from '../access/service-auth.js';
import { recordRefusal } from '../audit/refusal.js';
import { dashboardState, type FederationReader } from '../dashboard/state.js';
import { UnauthorizedError } from '../errors.js';
import type { HttpRequest } from '../http/api.js';
import { parseInput } from '../http/api.js';
import type { AuditLog, AuditRecord, ReplayGuard } from '../ports.js';

/** The audit stream refused dashboard sign-ins are recorded in (written here, reported by the dashboard). */
export const DASHBOARD_STREAM = 'dashboard';
export const DASHBOARD_SIGNER = 'dashboard';

export const refusalReportSchema = z
  .object({
    code: z.string().regex(/^[a-z_]{1,40}$/),
    method: z.string().regex(/^[A-Z]{1,10}$/),
    path: z.string().max(200),
    sourceIp: z.string().max(64).optional(),
  })
  .strict();

export interface DashboardFeedDeps {
  federation: FederationReader;
  audit: AuditLog & { readBounded(maxItems: number): Promise<{ records: AuditRecord[]; complete: boolean }> };
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

  state() {
    return dashboardState({
      federation: this.d.federation,
      audit: this.d.audit,
      threshold: this.d.threshold,
      nodeIds: this.d.nodeIds,
      maxKeys: this.d.maxKeys,
      maxAuditItems: this.d.maxAuditItems,
    });
  }

  /** A sign-in the dashboard refused (wrong viewer token), in the `dashboard` audit stream. */
  async recordRefusal(body: unknown): Promise<{ recorded: true }> {
    const r = parseInput(refusalReportSchema, body);
    await recordRefusal(this.d.audit, DASHBOARD_STREAM, new UnauthorizedError(r.code, 'refused by the dashboard'), r);
    return { recorded: true };
  }
}
