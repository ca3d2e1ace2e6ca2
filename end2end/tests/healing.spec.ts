import { test, expect } from '@playwright/test';
import { APP_URL, SANDBOX_URL } from '../playwright.config';
import { Marketplace, Onboarding, SimulatedPhone, freshSalonId, maskedPhone } from './pages';

test.beforeEach(async ({ page }) => {
  await new Marketplace(page).resetFaults();
});

test('after activation the phone unlinks us: the page shows a fresh QR, a scan makes it active again (iframe)', async ({ page, browser }) => {
  const salon = freshSalonId();
  const frame = await new Marketplace(page).connectInIframe(salon);
  const onboarding = new Onboarding(frame);
  await onboarding.waitForHydration();
  await onboarding.linkByQr(browser, '79995550101');
  await onboarding.expectActive();

  const phone = await SimulatedPhone.open(browser);
  await phone.unlink(salon);
  const notice = frame.getByTestId('whatsapp-disconnected');
  await expect(notice).toContainText('WhatsApp отключён');
  await expect(onboarding.qr()).toBeVisible();
  await expect(frame.getByTestId('switch-link-mode')).toBeVisible();
  await phone.scan(await onboarding.qrText(), '79995550101');
  await phone.close();
  await onboarding.expectLinked('79995550101');
  await onboarding.expectActive();
  await expect(notice).toHaveCount(0);
  await expect(frame.getByRole('heading', { name: 'Интеграция активна' })).toBeVisible();
  expect(await new Marketplace(page).acceptedCallbacks(salon)).toBe(1);
});

test('frozen in YClients: the page says so and links to the card; renewed, it is active again without a scan', async ({ page, browser }) => {
  const salon = freshSalonId();
  await new Marketplace(page).connect(salon);
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  await onboarding.linkByQr(browser, '79995550202');
  await onboarding.expectActive();

  const frozen = await page.request.post(`${SANDBOX_URL}/lifecycle/${salon}/freeze`, { maxRedirects: 0 });
  expect(frozen.status()).toBeLessThan(400);
  await expect(onboarding.root).toHaveAttribute('data-activation-state', 'frozen');
  const paused = page.getByTestId('activation-frozen');
  await expect(paused).toContainText('приостановлено в YClients');
  const card = page.getByTestId('marketplace-card');
  await expect(card).toHaveAttribute('href', new RegExp(`/appstore/${salon}/applications/1001/`));
  await expect(card).toHaveAttribute('target', '_top');

  const renewed = await page.request.post(`${SANDBOX_URL}/sandbox/links/${salon}/renew`);
  expect(renewed.status()).toBe(204);
  await onboarding.expectActive();
  await onboarding.expectLinked('79995550202');
  await expect(onboarding.qr()).toHaveCount(0);
});

test('a test message reaches the phone, and the page follows its receipts (360-px phone)', async ({ page, browser }) => {
  await page.setViewportSize({ width: 360, height: 740 });
  const salon = freshSalonId();
  await new Marketplace(page).connect(salon);
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  await onboarding.linkByQr(browser, '79995550303');
  await onboarding.expectActive();

  await page.getByTestId('test-phone').fill('+7 999 555-03-99');
  await page.getByTestId('send-test-message').click();
  const status = page.getByTestId('test-message-status');
  await expect(status).toContainText(maskedPhone('79995550399'));
  await expect(status).toHaveAttribute('data-status', 'delivered');
  await expect(status).toContainText('доставлено');
  // The whole panel fits the narrow screen.
  const box = await page.getByTestId('manage-whatsapp').boundingBox();
  expect(box && box.x + box.width).toBeLessThanOrEqual(360);

  const recipient = await SimulatedPhone.open(browser);
  const texts = await recipient.inbox('79995550399');
  await expect(texts.first()).toContainText('Тестовое сообщение AI Admin');
  await recipient.close();
  await expect(status).toHaveAttribute('data-status', 'read');
});

test('replaced elsewhere, in English: the explanation and "link again here" take the session back', async ({ page, browser }) => {
  const salon = freshSalonId();
  await new Marketplace(page).connect(salon);
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  await onboarding.linkByQr(browser, '79995550404');
  await onboarding.expectActive();
  await page.getByRole('button', { name: 'English' }).click();

  const server = await page.request.post(`${APP_URL}/dev/phone/replace`, { form: { salon: String(salon) } });
  expect(server.status()).toBe(200);
  const replaced = page.getByTestId('link-replaced');
  await expect(replaced).toContainText('WhatsApp Web was opened elsewhere with this account');
  await expect(onboarding.root).toHaveAttribute('data-link-state', 'replaced');
  await page.getByRole('button', { name: 'Link again here' }).click();
  await onboarding.expectLinked('79995550404');
  await expect(replaced).toHaveCount(0);
});

test('the admin disconnects WhatsApp after a confirmation and gets a new QR', async ({ page, browser }) => {
  const salon = freshSalonId();
  await new Marketplace(page).connect(salon);
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  await onboarding.linkByQr(browser, '79995550505');
  await onboarding.expectActive();

  await page.getByTestId('disconnect').click();
  await expect(page.getByTestId('disconnect-confirm')).toContainText('Отключить WhatsApp?');
  await page.getByTestId('disconnect-cancel').click();
  await expect(page.getByTestId('linked-phone')).toBeVisible();
  await page.getByTestId('disconnect').click();
  await page.getByTestId('disconnect-yes').click();
  await expect(page.getByTestId('whatsapp-disconnected')).toBeVisible();
  await expect(onboarding.qr()).toBeVisible();
  await expect(onboarding.root).toHaveAttribute('data-activation-state', 'active');
});
