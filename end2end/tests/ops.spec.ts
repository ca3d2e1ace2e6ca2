import { test, expect } from '@playwright/test';
import { APP_URL } from '../playwright.config';
import { Marketplace, Onboarding, OpsConsole, SimulatedPhone, freshSalonId } from './pages';

test.beforeEach(async ({ page }) => {
  await new Marketplace(page).resetFaults();
});

test('without a session the console is only a redirect to sign-in, even with an onboarding link', async ({ page }) => {
  const salon = freshSalonId();
  // The page drops the token from its address once it has read it: catch it on the way in.
  const seen: string[] = [];
  page.on('framenavigated', (frame) => seen.push(frame.url()));
  await new Marketplace(page).connect(salon);
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  const token = seen
    .map((url) => new URL(url).searchParams.get('token'))
    .find((t) => t);
  expect(token).toBeTruthy();
  await page.goto(`${APP_URL}/ops?token=${token}`);
  await expect(page).toHaveURL(/\/ops\/login$/);
  await expect(page.getByTestId('ops-sign-in')).toBeVisible();
});

test('sign in → a salon whose callback gave up → requeue → it becomes active', async ({ page, browser }) => {
  const marketplace = new Marketplace(page);
  await marketplace.failCallbacks('aggregator_not_found', 1);
  const salon = freshSalonId();
  await marketplace.connect(salon);
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  await onboarding.linkByQr(browser, '79995550201');
  await expect(onboarding.root).toHaveAttribute('data-activation-state', 'failed');

  const ops = await OpsConsole.open(browser);
  await ops.signIn();
  await ops.search(String(salon), { attention: true });
  await expect(ops.page.getByTestId('ops-salon-row')).toHaveCount(1);
  await ops.openSalon(salon);
  await expect(ops.page.getByTestId('ops-status')).toHaveText('activation_failed');
  await expect(ops.page.getByTestId('ops-callbacks')).toContainText('failed');
  await ops.act('requeue-callback');

  // The admin's page turns active by itself; so does the console's page, live, with the audit
  // entry and every attempt with YClients' answer (the refusal's 400, the requeued one's 201).
  await expect(ops.page.getByTestId('ops-live')).toHaveAttribute('data-channel', 'live');
  await onboarding.expectActive();
  await expect(ops.page.getByTestId('ops-status')).toHaveText('active');
  await expect(ops.page.getByTestId('ops-audit')).toContainText('e2e-operator');
  await expect(ops.page.getByTestId('ops-attempts').first()).toContainText('201');
  await expect(ops.page.getByTestId('ops-attempts').last()).toContainText('400');
  await ops.close();
});

test('a salon whose phone unlinked → log out → the salon\'s own page shows a QR', async ({ page, browser }) => {
  const salon = freshSalonId();
  await new Marketplace(page).connect(salon);
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  await onboarding.linkByQr(browser, '79995550202');
  await onboarding.expectActive();
  const phone = await SimulatedPhone.open(browser);
  await phone.unlink(salon);
  await phone.close();

  const ops = await OpsConsole.open(browser);
  await ops.signIn();
  await ops.search(String(salon), { whatsapp: 'logged_out', attention: true });
  await expect(ops.page.getByTestId('ops-salon-row')).toHaveCount(1);
  await ops.openSalon(salon);
  await expect(ops.page.getByTestId('ops-whatsapp-state')).toHaveText('logged_out');
  await ops.act('logout');
  await expect(ops.page.getByTestId('ops-audit')).toContainText('logout');

  await expect(onboarding.qr()).toBeVisible();
  await ops.close();
});
