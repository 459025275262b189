/**
 * A function's own secrets, read at run time under its own role, never from its environment:
 * the environment names where they are (a Secrets Manager secret id, or locally a file in the
 * operator's data directory) and nothing in the template or the function's configuration
 * reveals them. Read once per execution environment and kept in memory.
 */
import { readFile } from 'node:fs/promises';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { StorageError } from '../errors.js';

export interface SecretSource {
  AWS_REGION: string;
  /** Secrets Manager secret name or ARN: the deployed form. */
  secretId?: string | undefined;
  /** A JSON file: the local stack's stand-in for the operator's secret store. */
  file?: string | undefined;
}

const loaded = new Map<string, Promise<Record<string, string>>>();

async function fetchSecret(src: SecretSource, client?: SecretsManagerClient): Promise<Record<string, string>> {
  let text: string | undefined;
  if (src.file) text = await readFile(src.file, 'utf8');
  else if (src.secretId) {
    // Loaded only when used: a cold start that reads a file (locally) never pays for the client.
    const sm = await import('@aws-sdk/client-secrets-manager');
    text = (await (client ?? new sm.SecretsManagerClient({ region: src.AWS_REGION, maxAttempts: 3 })).send(new sm.GetSecretValueCommand({ SecretId: src.secretId }))).SecretString;
  }
  else throw new Error('invalid function configuration: no secret source (a secret id or a secrets file)');
  const parsed = JSON.parse(text ?? 'null') as unknown;
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('the function secret is not a JSON object');
  return parsed as Record<string, string>;
}

/** The secret's fields; a failed read is forgotten, so the next request tries again. */
export function loadSecrets(src: SecretSource, client?: SecretsManagerClient): Promise<Record<string, string>> {
  const key = `${src.AWS_REGION}|${src.secretId ?? ''}|${src.file ?? ''}`;
  let p = loaded.get(key);
  if (!p) {
    p = fetchSecret(src, client).catch((e: unknown) => {
      loaded.delete(key);
      // The message names the source, never a value.
      throw new StorageError(`cannot read this function's secrets (${src.secretId ? 'Secrets Manager' : 'secrets file'}): ${e instanceof Error ? e.name : 'error'}`);
    });
    loaded.set(key, p);
  }
  return p;
}

/** Forget cached secrets (rotation in a warm instance; tests). */
export const forgetSecrets = () => loaded.clear();
