import { test, expect } from '@playwright/test';
import { Marketplace, Onboarding, SimulatedPhone, freshSalonId } from './pages';

test.beforeEach(async ({ page }) => {
  await new Marketplace(page).resetFaults();
});

test('"активна" only after YClients confirmed: two failures, progress, then active', async ({ page, browser }) => {
  const marketplace = new Marketplace(page);
  await marketplace.failCallbacks('server_error', 2);
  const salon = freshSalonId();
  await marketplace.connect(salon);
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  const phone = await SimulatedPhone.open(browser);
  await phone.scan(await onboarding.qrText(), '79995556677');
  await onboarding.expectLinked('79995556677');
  await expect(page.getByTestId('activation-attempts')).toBeVisible();
  await expect(page.getByTestId('activation-active')).toHaveCount(0);
  await onboarding.expectActive();
  expect(await marketplace.acceptedCallbacks(salon)).toBe(1);
  await phone.close();
});

test('a definitive refusal is shown with what to do next', async ({ page, browser }) => {
  const marketplace = new Marketplace(page);
  await marketplace.failCallbacks('aggregator_not_found', 1);
  const salon = freshSalonId();
  await marketplace.connect(salon);
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  const phone = await SimulatedPhone.open(browser);
  await phone.scan(await onboarding.qrText(), '79996667788');
  const failed = page.getByTestId('activation-failed');
  await expect(failed).toContainText('Агрегатор не найден');
  await expect(failed).toContainText('маркетплейсе YClients');
  await expect(page.getByTestId('activation-active')).toHaveCount(0);
  // The retry button is a server action; YClients accepts this time.
  await page.getByRole('button', { name: 'Повторить активацию' }).click();
  await onboarding.expectActive();
  await phone.close();
});
