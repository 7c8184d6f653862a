// Runs fetch() inside a page of headless Chromium, so that the browser itself applies CORS.
//
//   node fetch.mjs PAGE_URL [CASES_JSON | -]
//
// PAGE_URL is the page the requests are made from (its origin is the request's Origin).
// CASES_JSON (or standard input when absent or "-") is a JSON list of
//   {"name": "...", "method": "GET", "url": "...", "headers": {...}, "body": "...", "page": "..."}
// where everything but url is optional; "page" runs that case from another page (origin).
// Prints one JSON line per case, in order:
//   {"name", "page", "ok", "status", "etag", "body", "error", "console"}
// A request the browser blocks for CORS rejects with a TypeError ("Failed to fetch"): ok is
// false, status null and error names the TypeError; console holds what Chromium logged about
// it. Exits 0 when every case ran, whatever the outcomes; 1 when the browser or a page could
// not be used.
//
// Needs playwright-core on NODE_PATH (scripts/browser.sh install prints the directory) and
// Chromium at $CHROMIUM (default /usr/bin/chromium). playwright-core never downloads a browser.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

// CommonJS resolution honours NODE_PATH; ES module imports do not.
const require = createRequire(import.meta.url);

const FETCH_TIMEOUT_MS = 20_000;
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];

function fail(message) {
  process.stderr.write(`fetch.mjs: ${message}\n`);
  process.exit(1);
}

const [pageUrl, casesArg] = process.argv.slice(2);
if (!pageUrl) fail('usage: node fetch.mjs PAGE_URL [CASES_JSON | -]');
let cases;
try {
  const text = casesArg && casesArg !== '-' ? casesArg : readFileSync(0, 'utf8');
  cases = JSON.parse(text);
} catch (err) {
  fail(`cannot read the cases: ${err.message}`);
}
if (!Array.isArray(cases)) fail('the cases must be a JSON list');

let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch (err) {
  fail(`cannot load playwright-core (is NODE_PATH set by scripts/browser.sh install?): ${err.message}`);
}

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
let browser;
try {
  // launch() gives the browser a fresh temporary profile (--user-data-dir) and removes it on
  // close, so nothing (preflight cache, HTTP cache) carries over from another run.
  browser = await chromium.launch({
    executablePath,
    headless: true,
    chromiumSandbox: false,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
} catch (err) {
  fail(`cannot launch ${executablePath}: ${err.message}`);
}

let exitCode = 0;
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  let logged = [];
  page.on('console', (msg) => logged.push(`${msg.type()}: ${msg.text()}`));

  let current = null;
  for (const c of cases) {
    const from = c.page || pageUrl;
    if (from !== current) {
      const response = await page.goto(from, { waitUntil: 'load', timeout: 30_000 });
      if (!response || !response.ok()) {
        throw new Error(`the page ${from} answered ${response ? response.status() : 'nothing'}`);
      }
      current = from;
    }
    logged = [];
    const result = await page.evaluate(
      async ({ method, url, headers, body, timeoutMs }) => {
        const abort = new AbortController();
        const timer = setTimeout(() => abort.abort(), timeoutMs);
        try {
          const response = await fetch(url, {
            method,
            headers,
            body,
            mode: 'cors',
            cache: 'no-store',
            credentials: 'omit',
            signal: abort.signal,
          });
          const text = await response.text();
          return {
            ok: response.ok,
            status: response.status,
            etag: response.headers.get('ETag'),
            body: text,
            error: null,
          };
        } catch (err) {
          return { ok: false, status: null, etag: null, body: null, error: `${err.name}: ${err.message}` };
        } finally {
          clearTimeout(timer);
        }
      },
      {
        method: c.method || 'GET',
        url: c.url,
        headers: c.headers || {},
        body: c.body ?? null,
        timeoutMs: FETCH_TIMEOUT_MS,
      },
    );
    process.stdout.write(
      `${JSON.stringify({ name: c.name ?? null, page: from, ...result, console: logged })}\n`,
    );
  }
} catch (err) {
  process.stderr.write(`fetch.mjs: ${err.message}\n`);
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
