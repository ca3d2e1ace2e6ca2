import { test, expect, type FrameLocator, type Page } from '@playwright/test';
import { SANDBOX_URL } from '../playwright.config';
import { Marketplace, Onboarding, SimulatedPhone, freshSalonId, maskedPhone } from './pages';

// Booking messages, as a salon admin meets them: inside the YClients iframe on a 360-px phone
// screen, after activation the «Сообщения» section; the admin turns the quiet hours off and
// words the confirmation their own way; YClients posts a booking; the client's (simulated) phone
// receives the text; the section lists it, then as read once the client opened it; the client
// answers «СТОП» and is listed as opted out. The server runs with the sender's pacing shortened
// (MESSAGES_* in playwright.config.ts).

test.use({ viewport: { width: 360, height: 740 } });

test.beforeEach(async ({ page }) => {
  await new Marketplace(page).resetFaults();
});

/** The webhook URL YClients was given in the confirmed activation callback of `salon`. */
async function entityWebhookUrl(page: Page, salon: number): Promise<string> {
  const callbacks = (await (await page.request.get(`${SANDBOX_URL}/sandbox/callbacks`)).json()) as Array<{
    body: { salon_id: number; webhook_urls: string[] };
    answered: number;
  }>;
  const url = callbacks.find((c) => c.body.salon_id === salon && c.answered === 201)?.body.webhook_urls[0];
  expect(url, 'the activation callback carried the webhook URL').toBeTruthy();
  return url as string;
}

/** Three days from now at 14:30 in Moscow (the sandbox's salons are there), as YClients writes it. */
function visitInThreeDays(): string {
  const moscow = new Date(Date.now() + 3 * 86_400_000 + 3 * 3_600_000);
  const day = moscow.toISOString().slice(0, 10);
  return `${day}T14:30:00+03:00`;
}

/** The section's rows of one kind of message. */
function rows(frame: FrameLocator, kind: string) {
  return frame.locator(`[data-testid="message-row"][data-kind="${kind}"]`);
}

/** Presses «Обновить» until the single `kind` row's status matches (the list is read on demand). */
async function expectStatus(frame: FrameLocator, kind: string, status: string | RegExp) {
  await expect(async () => {
    await frame.getByTestId('refresh-messages').click();
    await expect(rows(frame, kind)).toHaveCount(1, { timeout: 1_000 });
    await expect(rows(frame, kind)).toHaveAttribute('data-status', status, { timeout: 1_000 });
  }).toPass({ timeout: 20_000 });
}

test('in the iframe at 360 px: settings saved, a booking reaches the client, the list shows it read, «СТОП» opts out', async ({ page, browser }) => {
  const salon = freshSalonId();
  const client = '79160001234';
  const frame = await new Marketplace(page).connectInIframe(salon);
  const onboarding = new Onboarding(frame);
  await onboarding.waitForHydration();
  await onboarding.linkByQr(browser, '79995551212');
  await onboarding.expectActive();

  const section = frame.getByTestId('messages-section');
  await expect(section).toBeVisible();
  await expect(frame.getByTestId('no-messages')).toBeVisible();

  // The admin's own wording, previewed on the sample booking before it is saved.
  const template = 'Здравствуйте, {client_name}! Ждём вас {date} в {time}: {services}.';
  await frame.getByTestId('template-text-confirmation').fill(template);
  await frame.getByTestId('template-text-confirmation').dispatchEvent('change');
  await expect(frame.getByTestId('preview-confirmation')).toContainText('Здравствуйте, ');
  await expect(frame.getByTestId('preview-confirmation')).not.toContainText('{client_name}');
  // No quiet hours (from = to), so the journey does not depend on the hour CI runs at.
  await frame.getByTestId('quiet-start').fill('00:00');
  await frame.getByTestId('quiet-end').fill('00:00');
  await frame.getByTestId('save-message-settings').click();
  await expect(frame.getByTestId('messages-notice')).toBeVisible();
  await expect(frame.getByTestId('messages-error')).toHaveCount(0);

  // An unknown placeholder is refused on save, in words the admin can act on.
  await frame.getByTestId('template-text-confirmation').fill('Привет, {clientname}!');
  await frame.getByTestId('template-text-confirmation').dispatchEvent('change');
  await frame.getByTestId('save-message-settings').click();
  await expect(frame.getByTestId('messages-error')).toContainText('{clientname}');
  await frame.getByTestId('template-text-confirmation').fill(template);
  await frame.getByTestId('template-text-confirmation').dispatchEvent('change');
  await frame.getByTestId('save-message-settings').click();
  await expect(frame.getByTestId('messages-notice')).toBeVisible();

  // Nothing of the section reaches past a 360-px screen.
  const overflow = await frame.locator('body').evaluate(
    (body) => body.ownerDocument.documentElement.scrollWidth - body.ownerDocument.documentElement.clientWidth,
  );
  expect(overflow).toBeLessThanOrEqual(0);

  // YClients posts a new booking for a client with a Russian 8… number.
  const booking = {
    company_id: salon,
    resource: 'record',
    resource_id: 9001,
    status: 'create',
    data: {
      id: 9001, company_id: salon, staff_id: 5, datetime: visitInThreeDays(),
      services: [{ id: 1, title: 'Стрижка' }], staff: { id: 5, name: 'Анна' },
      client: { id: 9, name: 'Мария', phone: '8 (916) 000-12-34', email: '' },
      attendance: 0, confirmed: 1, deleted: false, comment: '', online: true,
    },
  };
  const webhook = await entityWebhookUrl(page, salon);
  const stored = await page.request.post(webhook, { data: booking });
  expect(stored.status()).toBe(200);
  // YClients retries: the same webhook again makes no second message.
  expect((await page.request.post(webhook, { data: booking })).status()).toBe(200);

  // The section lists the confirmation as sent (or already delivered) before anyone opened it,
  // and the two reminders (24 h and 2 h before the visit, the defaults) waiting.
  await expectStatus(frame, 'confirmation', /^(sent|delivered)$/);
  const confirmation = rows(frame, 'confirmation');
  await expect(confirmation).toContainText(maskedPhone(client));
  await expect(confirmation).not.toContainText(client);
  await expect(rows(frame, 'reminder')).toHaveCount(2);
  for (const reminder of await rows(frame, 'reminder').all()) {
    await expect(reminder).toHaveAttribute('data-status', 'pending');
  }

  // The client's phone has exactly one message, in the admin's words.
  const phone = await SimulatedPhone.open(browser);
  const inbox = await phone.inbox(client);
  await expect(inbox).toHaveCount(1);
  await expect(inbox.first()).toContainText('Здравствуйте, Мария! Ждём вас');
  await expect(inbox.first()).toContainText('14:30');
  await expect(inbox.first()).toContainText('Стрижка');
  // Opening it sent the read receipt: the admin sees it read.
  await expectStatus(frame, 'confirmation', 'read');

  // The client answers «СТОП»: one acknowledgement, and the section lists the number.
  await phone.reply(salon, 'СТОП');
  await expect(async () => {
    const texts = await phone.inbox(client);
    await expect(texts).toHaveCount(2, { timeout: 1_000 });
  }).toPass({ timeout: 20_000 });
  await expect(async () => {
    await frame.getByTestId('refresh-messages').click();
    await expect(frame.getByTestId('opted-out')).toContainText(maskedPhone(client), { timeout: 1_000 });
  }).toPass({ timeout: 20_000 });
  await phone.close();
});

test.describe('in English', () => {
  test.use({ locale: 'en-US' });

  test('the section speaks English, and bad reminder hours are explained before anything is saved', async ({ page, browser }) => {
    const salon = freshSalonId();
    await new Marketplace(page).connect(salon);
    const onboarding = new Onboarding(page);
    await onboarding.waitForHydration();
    await onboarding.linkByQr(browser, '79995551313');
    await onboarding.expectActive();
    await expect(page.getByTestId('messages-section').getByRole('heading', { level: 2 })).toHaveText('Messages');
    await expect(page.getByTestId('no-messages')).toHaveText('No messages yet.');
    await page.getByTestId('reminder-offsets').fill('24, soon');
    await page.getByTestId('save-message-settings').click();
    await expect(page.getByTestId('messages-error')).toHaveText('Enter hours separated by commas, e.g. 24, 2.');
  });
});

// The section's code is a chunk of its own (`cargo leptos build --split`): when it cannot be
// fetched, the admin is told so with a retry, and the rest of the page goes on.
test('a section whose code does not arrive is explained, the page stays live, and a retry loads it', async ({ page, browser }) => {
  let blocked = true;
  await page.route(/\/pkg\/split_messages_panel\.wasm$/, (route) => (blocked ? route.abort() : route.continue()));
  const salon = freshSalonId();
  await new Marketplace(page).connect(salon);
  const onboarding = new Onboarding(page);
  await onboarding.waitForHydration();
  await onboarding.expectChannel('live');
  await onboarding.linkByQr(browser, '79995551414');
  await onboarding.expectActive();
  await expect(page.getByTestId('messages-section-failed')).toContainText('Раздел «Сообщения» не загрузился');
  await expect(page.getByTestId('messages-section')).toHaveCount(0);
  // Still hydrated and live: the language switch works, the channel holds.
  await page.getByTestId('language-switch').click();
  await expect(page.getByTestId('messages-section-failed')).toContainText('The Messages section did not load');
  await onboarding.expectChannel('live');

  blocked = false;
  await page.getByTestId('messages-section-retry').click();
  await expect(page.getByTestId('messages-section').getByRole('heading', { level: 2 })).toHaveText('Messages');
  await expect(page.getByTestId('messages-section-failed')).toHaveCount(0);
});
