import * as http from 'node:http';
import { test, expect, type Page } from '@playwright/test';
import * as fs from 'node:fs';
import { APP_URL, NGINX_ACCESS_LOG, PROXY_URL, SANDBOX_URL } from '../playwright.config';
import { Marketplace, Onboarding, SimulatedPhone, freshSalonId } from './pages';

// The journeys through nginx with the production locations (deploy/nginx/): what buffering,
// compression or nginx's 60-s read timeout would break. Only when scripts/test.sh started nginx.
test.skip(!process.env.E2E_NGINX, 'nginx runs only under scripts/test.sh (E2E_NGINX)');

test.beforeEach(async ({ page }) => {
  await new Marketplace(page).resetFaults();
});

/** YClients' redirect for `salon`, sent to nginx instead of the app; returns the onboarding URL. */
async function enterThroughProxy(page: Page, salon: number): Promise<string> {
  const card = await page.request.get(`${SANDBOX_URL}/connect?ids=${salon}`, { maxRedirects: 0 });
  const redirect = card.headers()['location'];
  expect(redirect).toContain(`${APP_URL}/auth/yclients/redirect`);
  const entry = await page.request.get(redirect.replace(APP_URL, PROXY_URL), { maxRedirects: 0 });
  expect(entry.status()).toBe(303);
  const onboarding = entry.headers()['location'];
  expect(onboarding).toMatch(/^\/marketplace\/onboarding\?token=/);
  return `${PROXY_URL}${onboarding}`;
}

test('through nginx: the live channel passes each change on at once, and a webhook gets through', async ({ page, browser }) => {
  const salon = freshSalonId();
  await page.goto(await enterThroughProxy(page, salon));
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  await onboarding.expectChannel('live');

  const phone = await SimulatedPhone.open(browser);
  await phone.scan(await onboarding.qrText(), '79995550606');
  await phone.close();
  // Over SSE, unbuffered: the link shows within a moment (a buffering proxy would hold the event
  // until the stream ends, and the live channel never ends by itself).
  await expect(page.getByTestId('linked-phone')).toBeVisible({ timeout: 3_000 });
  await onboarding.expectChannel('live');
  await onboarding.expectActive();

  // An entity webhook at the URL YClients was given, through nginx.
  const callbacks = (await (await page.request.get(`${SANDBOX_URL}/sandbox/callbacks`)).json()) as Array<{
    body: { salon_id: number; webhook_urls: string[] };
    answered: number;
  }>;
  const webhookUrl = callbacks.find((c) => c.body.salon_id === salon && c.answered === 201)?.body.webhook_urls[0];
  expect(webhookUrl).toBeTruthy();
  const delivered = await page.request.post((webhookUrl as string).replace(APP_URL, PROXY_URL), {
    data: { company_id: salon, resource: 'record', resource_id: 42, status: 'create', data: { id: 42 } },
  });
  expect(delivered.status()).toBe(200);
});

test('through nginx with the live channel blocked, polling completes the journey', async ({ page, browser }) => {
  await page.route('**/marketplace/api/events**', (route) => route.abort());
  const salon = freshSalonId();
  await page.goto(await enterThroughProxy(page, salon));
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  await onboarding.expectChannel('polling');
  await onboarding.linkByQr(browser, '79995550707');
  await onboarding.expectActive();
});

test('through nginx, one live stream stays open past nginx\'s default 60-s read timeout', async ({ page }) => {
  test.setTimeout(120_000);
  const salon = freshSalonId();
  const onboardingUrl = await enterThroughProxy(page, salon);
  const token = new URL(onboardingUrl).searchParams.get('token');
  await page.goto(`${PROXY_URL}/marketplace/health`);
  const seen = await page.evaluate(async (url) => {
    return await new Promise<{ opens: number; errors: number; pings: number; headerOk: boolean }>((resolve) => {
      const counts = { opens: 0, errors: 0, pings: 0, headerOk: true };
      const source = new EventSource(url);
      source.onopen = () => { counts.opens += 1; };
      source.onerror = () => { counts.errors += 1; };
      source.addEventListener('ping', () => { counts.pings += 1; });
      setTimeout(() => { source.close(); resolve(counts); }, 70_000);
    });
  }, `${PROXY_URL}/marketplace/api/events?token=${token}`);
  // One connection for 70 s: no drop at 60 s (an error and a reopen), pings every 10 s through.
  expect(seen.opens).toBe(1);
  expect(seen.errors).toBe(0);
  expect(seen.pings).toBeGreaterThanOrEqual(5);
});

test('the live channel tells proxies not to buffer it, and reaches the browser uncompressed through nginx', async ({ page }) => {
  const salon = freshSalonId();
  const token = new URL(await enterThroughProxy(page, salon)).searchParams.get('token');
  for (const base of [APP_URL, PROXY_URL]) {
    const headers = await responseHeaders(`${base}/marketplace/api/events?token=${token}`);
    // The app says it to nginx; nginx acts on it and does not pass it on.
    expect(headers['x-accel-buffering'], base).toBe(base === APP_URL ? 'no' : undefined);
    expect(headers['content-type'], base).toContain('text/event-stream');
    expect(headers['content-encoding'], base).toBeUndefined();
  }
});

/** The headers of a response that never ends (an event stream), asking for gzip like a browser. */
function responseHeaders(url: string): Promise<http.IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { headers: { 'Accept-Encoding': 'gzip, br' } }, (response) => {
      resolve(response.headers);
      response.destroy();
    });
    request.on('error', reject);
    request.setTimeout(10_000, () => request.destroy(new Error(`no answer from ${url}`)));
  });
}

// The site's files keep their names across releases, and the main WASM and its chunks must come
// from one build: through nginx too, a browser asks again each time (a 304 when unchanged).
test('through nginx the WASM and its chunks are revalidated, never kept from an older release', async ({ page }) => {
  for (const file of ['ai-admin-connect.wasm', 'ai-admin-connect.js', 'split_messages_panel.wasm', 'split_hydrate_console.wasm']) {
    const first = await page.request.get(`${PROXY_URL}/pkg/${file}`);
    expect(first.status(), file).toBe(200);
    expect(first.headers()['cache-control'], file).toBe('no-cache');
    expect(first.headers()['expires'], file).toBeUndefined();
    const again = await page.request.get(`${PROXY_URL}/pkg/${file}`, {
      headers: { 'If-Modified-Since': first.headers()['last-modified'] },
    });
    expect(again.status(), file).toBe(304);
  }
});

test("nginx's access log keeps no onboarding token, signed user data or webhook secret", async ({ page }) => {
  const salon = freshSalonId();
  // The redirect (signed user_data), the page and the live channel (?token=), through nginx.
  const card = await page.request.get(`${SANDBOX_URL}/connect?ids=${salon}`, { maxRedirects: 0 });
  const redirect = card.headers()['location'];
  const signature = new URL(redirect).searchParams.get('user_data_sign') as string;
  expect(signature).toBeTruthy();
  const onboardingUrl = await enterThroughProxy(page, salon);
  const token = new URL(onboardingUrl).searchParams.get('token') as string;
  await page.goto(onboardingUrl);
  await new Onboarding(page).expectChannel('live');
  // A webhook URL's secret (refused here: it is not this salon's; logged all the same).
  const secret = 'leaked-webhook-secret-0123456789';
  const refused = await page.request.post(`${PROXY_URL}/webhook/yclients/events/${salon}/${secret}`, {
    data: { company_id: salon, resource: 'client', resource_id: 1, status: 'update', data: {} },
  });
  expect(refused.status()).toBe(401);
  await page.close();

  // nginx logs a request when it ends: the live stream's once the page has gone.
  const read = () => fs.readFileSync(NGINX_ACCESS_LOG, 'utf8');
  await expect.poll(read, { timeout: 10_000 }).toContain('GET /marketplace/api/events?[redacted]');
  const log = read();
  // The requests are there, by path...
  expect(log).toContain('GET /auth/yclients/redirect?[redacted]');
  expect(log).toContain('GET /marketplace/onboarding?[redacted]');
  expect(log).toContain(`POST /webhook/yclients/events/${salon}/[redacted] `);
  // ...and none of what they carried.
  for (const leaked of [token, signature, secret, 'user_data=', 'token=']) {
    expect(log, `the access log holds ${leaked.slice(0, 24)}…`).not.toContain(leaked);
  }
});

test('through nginx the metrics answer only this host; health answers anyone', async () => {
  // Node's own request, so that it can come from another loopback address (as a client
  // elsewhere would): nginx sees 127.0.0.2, not 127.0.0.1.
  const get = (path: string, localAddress: string) =>
    new Promise<number>((resolve, reject) => {
      const request = http.get(`${PROXY_URL}${path}`, { localAddress }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on('error', reject);
    });
  expect(await get('/marketplace/metrics', '127.0.0.1')).toBe(200);
  expect(await get('/marketplace/metrics', '127.0.0.2')).toBe(403);
  expect(await get('/marketplace/health', '127.0.0.2')).toBe(200);
});
