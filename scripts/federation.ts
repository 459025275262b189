/** Where the scripts find the federation: FEDKMS_URL / FEDKMS_TOKEN, or the file `npm start` writes. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface Federation {
  url: string;
  token: string;
  controlUrl?: string;
  nodes: Record<string, string>;
}

export function loadFederation(): Federation {
  const file = path.resolve(__dirname, '..', '.local', 'federation.json');
  const local = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Federation) : undefined;
  const url = process.env['FEDKMS_URL'] ?? local?.url;
  const token = process.env['FEDKMS_TOKEN'] ?? local?.token;
  if (!url || !token) {
    console.error('No federation found: start one with `npm start`, or set FEDKMS_URL and FEDKMS_TOKEN.');
    process.exit(2);
  }
  return { url, token, controlUrl: local?.controlUrl, nodes: local?.nodes ?? {} };
}

export async function api(f: Federation, method: string, p: string, body?: unknown): Promise<{ status: number; body: any; ms: number }> {
  const t0 = performance.now();
  let res: Response;
  try {
    res = await fetch(`${f.url}${p}`, {
      method,
      headers: { authorization: `Bearer ${f.token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch {
    console.error(`Cannot reach the federation at ${f.url}: is \`npm start\` running?`);
    process.exit(2);
  }
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, ms: performance.now() - t0 };
}
