/**
 * The client request being served, for the node calls it causes. Every node call made
 * while serving it carries it (lib/coordinator/node-client.ts), so each node can check
 * the client's own signature and policy; the coordinator's word alone is never enough.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Approval, ClientEnvelope } from '../crypto/client-auth.js';

const context = new AsyncLocalStorage<{ envelope: ClientEnvelope }>();

export const withClientRequest = <T>(envelope: ClientEnvelope, fn: () => Promise<T>): Promise<T> => context.run({ envelope }, fn);

export const currentClientRequest = (): ClientEnvelope | undefined => context.getStore()?.envelope;

/** Attach the approvals collected for this request (reconstruction); nodes verify each one. */
export function attachApprovals(approvals: Approval[]): void {
  const store = context.getStore();
  if (store && approvals.length) store.envelope = { ...store.envelope, approvals: approvals.slice(0, 16) };
}
