import { test, expect } from '@playwright/test';
import { Marketplace, Onboarding, SimulatedPhone, freshSalonId } from './pages';

test.beforeEach(async ({ page }) => {
  await new Marketplace(page).resetFaults();
});

test('when the QR codes run out, the admin gets a new one with a button', async ({ page, browser }) => {
  const salon = freshSalonId();
  await new Marketplace(page).connect(salon);
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  await expect(page.getByTestId('qr-countdown')).toBeVisible();
  const expired = page.getByTestId('qr-expired');
  await expect(expired).toBeVisible({ timeout: 40_000 });
  await expect(expired).toContainText('Срок действия QR-кодов истёк');
  await page.getByRole('button', { name: 'Показать новый QR-код' }).click();
  await expect(onboarding.qr()).toBeVisible();
  const phone = await SimulatedPhone.open(browser);
  await phone.scan(await onboarding.qrText(), '79993334455');
  await onboarding.expectActive();
  await phone.close();
});

test('linking by phone number with a pair code', async ({ page, browser }) => {
  const salon = freshSalonId();
  await new Marketplace(page).connect(salon);
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  await page.getByRole('button', { name: 'Привязать по номеру телефона' }).click();
  await page.getByLabel('Номер WhatsApp салона').fill('+7 999 444-55-66');
  await page.getByRole('button', { name: 'Получить код' }).click();
  const code = page.getByTestId('pairing-code');
  await expect(code).toHaveText(/^[A-Z0-9]{4}-[A-Z0-9]{4}$/);
  await expect(page.getByTestId('pairing')).toContainText('Связанные устройства');
  const phone = await SimulatedPhone.open(browser);
  await phone.enterPairCode((await code.textContent()) ?? '');
  await onboarding.expectLinked('79994445566');
  await onboarding.expectActive();
  await phone.close();
});

// The explanation is the server's `AppError`, read by the browser's JSON.parse (app/src/wire.rs).
test('a wrong phone number is explained, not swallowed', async ({ page }) => {
  const salon = freshSalonId();
  await new Marketplace(page).connect(salon);
  await new Onboarding(page).waitForHydration();
  await page.getByRole('button', { name: 'Привязать по номеру телефона' }).click();
  await page.getByLabel('Номер WhatsApp салона').fill('12345');
  await page.getByRole('button', { name: 'Получить код' }).click();
  await expect(page.getByTestId('action-error')).toContainText('номер телефона');
});
