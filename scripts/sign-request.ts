/**
 * Signs one request for curl users: prints the four x-fedkms-client-* headers as curl
 * arguments. The body must be passed exactly as curl will send it.
 *
 *   curl -s -X POST $URL/keys/example/sign -H 'content-type: application/json' \
 *     $(npm run -s sign-request -- POST /keys/example/sign '{"message":"aGk="}') -d '{"message":"aGk="}'
 *
 * Identity: FEDKMS_CLIENT and FEDKMS_CLIENT_KEY, or the administrator `npm start` wrote.
 */
import { signedHeaders } from '../lib/client/signer.js';
import { loadFederation } from './federation.js';

const [method, pathAndQuery, body = ''] = process.argv.slice(2);
if (!method || !pathAndQuery || !pathAndQuery.startsWith('/')) {
  console.error('usage: sign-request METHOD /path[?query] [BODY]');
  process.exit(2);
}
const headers = signedHeaders(loadFederation().client, method, pathAndQuery, body);
// Header values are base64, digits, names and uuids: no spaces, so word splitting is safe.
process.stdout.write(Object.entries(headers).map(([k, v]) => `-H ${k}:${v}`).join(' ') + '\n');
