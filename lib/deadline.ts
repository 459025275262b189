/**
 * Request deadlines. Every request carries a budget (ms) in `x-fedkms-budget-ms`, set
 * by the client, capped by what is left of the receiving function's own timeout, and
 * passed on, shrunk, to every call it makes. A budget is relative, not a wall-clock
 * instant, so it needs no synchronised clocks between operators (like gRPC's timeout).
 *
 * The deadline of the request being served travels in async context, as the
 * correlation id and the client request do: fan-outs, node calls and storage calls
 * read it without every signature in between naming it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export const BUDGET_HEADER = 'x-fedkms-budget-ms';

/** Kept back from the function's own timeout so an answer (an error at worst) always leaves before the platform kills it. */
export const FUNCTION_RESERVE_MS = 500;
/** The longest budget anyone may ask for: API Gateway stops waiting at 30 s. */
export const MAX_BUDGET_MS = 30_000;

export class Deadline {
  private constructor(private readonly at: number) {}

  static in(ms: number): Deadline {
    return new Deadline(performance.now() + Math.max(0, ms));
  }

  /** ms left, never negative. */
  remaining(): number {
    return Math.max(0, this.at - performance.now());
  }

  expired(): boolean {
    return this.remaining() <= 0;
  }

  /** A deadline `reserveMs` earlier: what a callee gets so the caller still has time to use its answer. */
  less(reserveMs: number): Deadline {
    return new Deadline(this.at - reserveMs);
  }

  /** Abort signal that fires at this deadline. */
  signal(): AbortSignal {
    return AbortSignal.timeout(Math.max(1, Math.floor(this.remaining())));
  }
}

/** A budget header's value in ms, or undefined when absent or malformed (never trusted beyond MAX_BUDGET_MS). */
export function parseBudget(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,9}$/.test(value)) return undefined;
  return Math.min(Number(value), MAX_BUDGET_MS);
}

/**
 * The deadline of an incoming request: the caller's budget, else `defaultMs`, capped by
 * what is left of this function's timeout minus a reserve for the answer itself.
 */
export function requestDeadline(header: string | undefined, functionRemainingMs: number | undefined, defaultMs: number): Deadline {
  const asked = parseBudget(header) ?? defaultMs;
  const cap = functionRemainingMs === undefined ? MAX_BUDGET_MS : functionRemainingMs - FUNCTION_RESERVE_MS;
  return Deadline.in(Math.min(asked, cap));
}

const context = new AsyncLocalStorage<Deadline>();

export const withDeadline = <T>(deadline: Deadline, fn: () => Promise<T>): Promise<T> => context.run(deadline, fn);

export const currentDeadline = (): Deadline | undefined => context.getStore();

/** ms left of the current request's deadline, else `fallbackMs` (unit tests and scripts run with no request). */
export const remainingOr = (fallbackMs: number): number => currentDeadline()?.remaining() ?? fallbackMs;

/** A signal that fires when this request's deadline passes (outside a request: after `fallbackMs`). */
export const untilDeadline = (fallbackMs: number): AbortSignal => currentDeadline()?.signal() ?? AbortSignal.timeout(fallbackMs);
