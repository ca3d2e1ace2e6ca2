import { test, expect } from '@playwright/test';
import { SANDBOX_URL } from '../playwright.config';
import { Marketplace, Onboarding, freshSalonId } from './pages';

test.beforeEach(async ({ page }) => {
  await new Marketplace(page).resetFaults();
});

test('from "Подключить" in a new tab to an active integration, over the live channel', async ({ page, browser }) => {
  await page.goto(`${SANDBOX_URL}/`);
  // Which WASM the tab fetches: the split build keeps the «Сообщения» section out of the first
  // page's bundle, in a chunk fetched once the integration is active. Watched on the context from
  // before the click: a listener on the tab itself, added once the popup event arrived, missed
  // the tab's first WASM request when the page loaded fast (a CI run saw `[]`).
  const wasm: string[] = [];
  page.context().on('request', (request) => {
    const path = new URL(request.url()).pathname;
    if (path.endsWith('.wasm') && request.frame().page() !== page) wasm.push(path);
  });
  const [tab] = await Promise.all([page.waitForEvent('popup'), page.getByTestId('connect-962302').click()]);
  const onboarding = new Onboarding(tab);
  await expect(tab.getByTestId('salon-title')).toHaveText('Салон красоты «Орхидея»');
  // The QR is in the server's first HTML, before any WASM.
  const qrText = await onboarding.qrText();
  expect(qrText).toContain('/dev/phone?');
  await expect(onboarding.qr()).toHaveAttribute('aria-label', 'QR-код для привязки WhatsApp');
  await onboarding.waitForHydration();
  await expect(tab).not.toHaveURL(/token=/);
  await onboarding.expectChannel('live');
  expect(wasm).toEqual(['/pkg/ai-admin-connect.wasm']);
  // The steps and the scan instructions follow the state (each made by one shared closure type,
  // docs/design.md, "A lighter page").
  const steps = tab.locator('ol.steps > li');
  await expect(steps).toHaveCount(3);
  await expect(steps.nth(0)).toHaveAttribute('aria-current', 'step');
  await expect(steps.nth(0)).toHaveClass('step current');
  await expect(steps.nth(1)).toHaveClass('step');
  await expect(tab.locator('ol.instructions > li')).toHaveCount(4);

  await onboarding.linkByQr(browser, '79990001122');
  await onboarding.expectActive();
  await expect(tab.getByRole('heading', { name: 'Интеграция активна' })).toBeVisible();
  await expect(tab.getByTestId('messages-section')).toBeVisible();
  expect(wasm.some((path) => /^\/pkg\/split_messages_panel\.wasm$/.test(path))).toBe(true);
  expect(wasm.some((path) => path.includes('hydrate_console'))).toBe(false);
  await expect(tab.getByTestId('announcement')).toHaveText('Интеграция активна');
  for (let i = 0; i < 3; i++) {
    await expect(steps.nth(i)).toHaveClass('step done');
    await expect(steps.nth(i)).not.toHaveAttribute('aria-current');
  }
  expect(await new Marketplace(page).acceptedCallbacks(962302)).toBe(1);
});

test('with the live channel blocked, polling completes the journey', async ({ page, browser }) => {
  await page.route('**/marketplace/api/events**', (route) => route.abort());
  const salon = freshSalonId();
  await new Marketplace(page).connect(salon);
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  await onboarding.expectChannel('polling');
  await onboarding.linkByQr(browser, '79991112233');
  await onboarding.expectActive();
  await expect(page.getByTestId('connection-lost')).toHaveCount(0);
});

test('inside the YClients Settings iframe from another origin', async ({ page, browser }) => {
  const salon = freshSalonId();
  const frame = await new Marketplace(page).connectInIframe(salon);
  const onboarding = new Onboarding(frame);
  await onboarding.waitForHydration();
  await onboarding.expectChannel('live');
  await onboarding.linkByQr(browser, '79992223344');
  await onboarding.expectActive();
});
