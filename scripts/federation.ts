/** Where the scripts find the federation and their client identity: env, or the file `npm start` writes. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { FedkmsClient } from '../lib/client/api.js';
import { identityFrom, type ClientIdentity } from '../lib/client/signer.js';

export interface Federation {
  url: string;
  client: ClientIdentity;
  controlUrl?: string;
  nodes: Record<string, string>;
  /** Node identity keys the client pins (end-to-end reconstruction checks each fragment's signature). */
  nodeKeys?: Record<string, string>;
  /** Administrator public keys the client trusts: node keys are pinned from the membership they signed. */
  adminKeys?: Record<string, string>;
}

export function loadFederation(): Federation {
  const file = path.resolve(__dirname, '..', '.local', 'federation.json');
  const local = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { url?: string; client?: { name: string; privateKey: string }; controlUrl?: string; nodes?: Record<string, string>; nodeKeys?: Record<string, string>; adminKeys?: Record<string, string> }) : undefined;
  const url = process.env['FEDKMS_URL'] ?? local?.url;
  const name = process.env['FEDKMS_CLIENT'] ?? local?.client?.name;
  const key = process.env['FEDKMS_CLIENT_KEY'] ?? local?.client?.privateKey;
  const client = name && key ? identityFrom({ name, privateKey: key }) : undefined;
  if (!url || !client) {
    console.error('No federation found: start one with `npm start`, or set FEDKMS_URL, FEDKMS_CLIENT and FEDKMS_CLIENT_KEY.');
    process.exit(2);
  }
  return { url, client, ...(local?.controlUrl ? { controlUrl: local.controlUrl } : {}), nodes: local?.nodes ?? {}, ...(local?.nodeKeys ? { nodeKeys: local.nodeKeys } : {}), ...(local?.adminKeys ? { adminKeys: local.adminKeys } : {}) };
}

export const clientOf = (f: Federation) => new FedkmsClient(f.url, f.client);

export async function api(f: Federation, method: string, p: string, body?: unknown): Promise<{ status: number; body: any; ms: number }> {
  try {
    return await clientOf(f).call(method, p, body);
  } catch {
    console.error(`Cannot reach the federation at ${f.url}: is \`npm start\` running?`);
    process.exit(2);
  }
}
