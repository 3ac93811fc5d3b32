// Tests of deny-revoked.js, run by `node --test` (Node 20) from
// deploy's Go tests. The function is the file as shipped; only the
// `cloudfront` module, which the CloudFront Functions runtime provides,
// is stubbed, with an in-memory key value store, in a temporary
// node_modules next to a copy of the function that exports its handler.
// This runs the function in Node, not in the cloudfront-js-2.0 runtime:
// CloudFront's TestFunction API is the check of the published function.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
let handler;
let store;
let dir;

// The runtime's kvs handle: exists() as documented, over a Map; fail
// makes every read throw, as an unreadable store would. get() always
// throws: the function must need only whether a token is a key (the
// value is the links' expiry, for revoke -prune), and a get would fail
// open and let the revoked cases through.
const stub = `
export const state = { keys: new Map(), fail: false };
const handle = {
  async exists(key) { if (state.fail) throw new Error('kvs unavailable'); return state.keys.has(key); },
  async get(key) { throw new Error('get is not for the deny list: exists is'); },
};
export default { kvs() { return handle; } };
`;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'deny-revoked-'));
  mkdirSync(join(dir, 'node_modules', 'cloudfront'), { recursive: true });
  writeFileSync(join(dir, 'node_modules', 'cloudfront', 'package.json'), JSON.stringify({ name: 'cloudfront', type: 'module', main: 'index.js' }));
  writeFileSync(join(dir, 'node_modules', 'cloudfront', 'index.js'), stub);
  const src = readFileSync(join(here, 'deny-revoked.js'), 'utf8');
  writeFileSync(join(dir, 'fn.mjs'), src + '\nexport { handler };\n');
  ({ handler } = await import(pathToFileURL(join(dir, 'fn.mjs'))));
  ({ state: store } = await import(pathToFileURL(join(dir, 'node_modules', 'cloudfront', 'index.js'))));
});

// The modules are loaded; their files are no longer needed.
after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

const REVOKED = 'PDFpUcE6Z3s3oEQtnvEvLQ';
const OTHER = 'AAAAAAAAAAAAAAAAAAAAAA';

// viewerRequest is the event CloudFront gives a viewer-request function
// for a signed link, with the query string parsed as the runtime does.
function viewerRequest(querystring) {
  return {
    version: '1.0',
    context: { eventType: 'viewer-request' },
    viewer: { ip: '192.0.2.10' },
    request: {
      method: 'GET',
      uri: '/u1/report.pdf',
      querystring: Object.assign({
        Expires: { value: '1767225600' },
        Signature: { value: 'abc~' },
        'Key-Pair-Id': { value: 'K2JCJMDEHXQW5F' },
      }, querystring),
      headers: { host: { value: 'files.example.com' } },
      cookies: {},
    },
  };
}

const cases = [
  { name: 'a revoked token is denied', qs: { rmt: { value: REVOKED } }, denied: true },
  { name: 'a token not on the list passes', qs: { rmt: { value: OTHER } }, denied: false },
  { name: 'an untraced link passes', qs: {}, denied: false },
  { name: 'a revoked token among several values is denied', qs: { rmt: { value: OTHER, multiValue: [{ value: OTHER }, { value: REVOKED }] } }, denied: true },
  { name: 'another parameter with the token is not read', qs: { xrmt: { value: REVOKED } }, denied: false },
  { name: 'an unreadable deny list lets the signature decide', qs: { rmt: { value: REVOKED } }, denied: false, fail: true },
];

for (const c of cases) {
  test(c.name, async () => {
    store.keys = new Map([[REVOKED, 'expires 2027-01-02T16:00:00Z']]);
    store.fail = !!c.fail;
    const ev = viewerRequest(c.qs);
    const before = JSON.stringify(ev.request);
    const out = await handler(ev);
    if (c.denied) {
      assert.equal(out.statusCode, 403);
      assert.equal(out.headers['cache-control'].value, 'no-store');
    } else {
      assert.equal(out, ev.request, 'the request goes on to CloudFront');
      assert.equal(JSON.stringify(out), before, 'the request is unchanged, so its signature still matches');
    }
  });
}

test('revoking takes effect on the next request', async () => {
  store.fail = false;
  store.keys = new Map();
  const ev = () => viewerRequest({ rmt: { value: OTHER } });
  assert.equal((await handler(ev())).statusCode, undefined);
  store.keys.set(OTHER, 'expires 2027-01-02T16:05:00Z');
  assert.equal((await handler(ev())).statusCode, 403);
});

// Cases from a caller, such as the revoke test of cmd/reportmailer: a
// JSON list of {name, url, deny: [tokens], denied} in
// DENY_REVOKED_CASES, each a link as sent in an email, run against a
// deny list holding those tokens.
const extra = process.env.DENY_REVOKED_CASES ? JSON.parse(process.env.DENY_REVOKED_CASES) : [];
for (const c of extra) {
  test('given: ' + c.name, async () => {
    store.fail = false;
    store.keys = new Map(c.deny.map((t) => [t, 'expires 2027-01-02T16:00:00Z']));
    const u = new URL(c.url);
    const qs = {};
    for (const part of u.search.slice(1).split('&')) {
      const i = part.indexOf('=');
      const name = i < 0 ? part : part.slice(0, i);
      const value = i < 0 ? '' : part.slice(i + 1);
      if (qs[name]) {
        qs[name].multiValue = (qs[name].multiValue || [{ value: qs[name].value }]).concat([{ value }]);
      } else {
        qs[name] = { value };
      }
    }
    const ev = viewerRequest({});
    ev.request.uri = u.pathname;
    ev.request.querystring = qs;
    const out = await handler(ev);
    assert.equal(out.statusCode === 403, c.denied, c.denied ? 'the revoked link is denied' : 'the link goes on');
  });
}
