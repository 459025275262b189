/** docs/openapi.yaml documents every HTTP route the deployment template declares. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';

const ROOT = path.resolve(__dirname, '../..');
// The all-in-one template needs the public keys its units trust (written by `npm run secrets:aws -- --all`).
process.env['FEDKMS_PUBLIC_KEYS'] = path.join(ROOT, 'fixtures/public-keys.example.json');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { render } = require('../../deploy/federation.cjs') as { render: (stage: string, configFile?: string) => { functions: Record<string, { events: { httpApi: { method: string; path: string } }[] }> } };

it('documents every route of every function', () => {
  const doc = parse(readFileSync(path.join(ROOT, 'docs/openapi.yaml'), 'utf8')) as { paths: Record<string, Record<string, unknown>> };
  const documented = new Set<string>();
  for (const [p, ops] of Object.entries(doc.paths)) for (const m of Object.keys(ops)) documented.add(`${m.toUpperCase()} ${p}`);
  const missing: string[] = [];
  for (const fn of Object.values(render('ci', path.join(ROOT, 'fedkms.config.json')).functions)) {
    for (const e of fn.events) {
      const p = e.httpApi.path.replace(/^\/nodes\/[a-z0-9-]+\//, '/nodes/{nodeId}/');
      const generic = p.replace(/\/(dkg|sign|reshare)\/[a-z0-9]+$/, '/$1/{step}');
      if (!documented.has(`${e.httpApi.method} ${p}`) && !documented.has(`${e.httpApi.method} ${generic}`)) missing.push(`${e.httpApi.method} ${p}`);
    }
  }
  expect([...new Set(missing)]).toEqual([]);
});
