import { expect, type Browser, type FrameLocator, type Locator, type Page } from '@playwright/test';
import { APP_URL, SANDBOX_URL } from '../playwright.config';

let nextSalon = 700_000 + Math.floor(Math.random() * 1000) * 100;
/** A salon id no other spec in this run uses. */
export function freshSalonId(): number {
  nextSalon += 1;
  return nextSalon;
}

/** A number as a token holder sees it, by the rule of `PhoneNumber::masked` (app/src/domain.rs):
 * `79994445566` → `+7 999 ***-**-66`; other lengths keep all but the last 7 digits, then the last 2. */
export function maskedPhone(digits: string): string {
  const head = digits.length === 11 && digits.startsWith('7')
    ? `7 ${digits.slice(1, 4)}`
    : digits.slice(0, -7);
  return `+${head} ***-**-${digits.slice(-2)}`;
}

/** The YClients sandbox: the marketplace card and its fault knobs. */
export class Marketplace {
  constructor(private readonly page: Page) {}

  async resetFaults() {
    const response = await this.page.request.delete(`${SANDBOX_URL}/sandbox/faults`);
    expect(response.ok()).toBeTruthy();
  }

  async failCallbacks(kind: string, count: number) {
    const response = await this.page.request.post(`${SANDBOX_URL}/sandbox/faults`, {
      data: { kind, count, path_contains: '/marketplace/partner/callback' },
    });
    expect(response.ok()).toBeTruthy();
  }

  async acceptedCallbacks(salonId: number): Promise<number> {
    const response = await this.page.request.get(`${SANDBOX_URL}/sandbox/callbacks`);
    const callbacks = (await response.json()) as Array<{ body: { salon_id: number }; answered: number }>;
    return callbacks.filter((c) => c.body.salon_id === salonId && c.answered === 201).length;
  }

  /** "Подключить" for a salon, as the link on the app card does (same tab). */
  async connect(salonId: number) {
    await this.page.goto(`${SANDBOX_URL}/connect?ids=${salonId}`);
  }

  /** "Подключить" inside the app card's Settings tab: our page in a cross-origin iframe. */
  async connectInIframe(salonId: number): Promise<FrameLocator> {
    await this.page.goto(`${SANDBOX_URL}/connect?ids=${salonId}&mode=iframe`);
    return this.page.frameLocator('#app-frame');
  }
}

/** The onboarding page, in a page or inside the YClients iframe. */
export class Onboarding {
  readonly root: Locator;
  constructor(private readonly scope: Page | FrameLocator) {
    this.root = scope.getByTestId('onboarding');
  }

  async waitForHydration() {
    await expect(this.scope.locator('body[data-hydrated="true"]')).toHaveCount(1);
  }

  qr(): Locator {
    return this.scope.getByTestId('qr-code');
  }

  /** What the QR encodes (the simulated phone's URL), as a phone camera would read it. */
  async qrText(): Promise<string> {
    await expect(this.qr()).toBeVisible();
    const text = await this.qr().getAttribute('data-qr-text');
    expect(text).toBeTruthy();
    return text as string;
  }

  /** The page shows the linked number masked (`+7 999 ***-**-66`), never its digits in full. */
  async expectLinked(phoneDigits: string) {
    const linked = this.scope.getByTestId('linked-phone');
    await expect(linked).toContainText(maskedPhone(phoneDigits));
    await expect(linked).not.toContainText(phoneDigits);
  }

  /** A phone (its own browser context) scans the QR shown now and links `phoneDigits`; the page shows it. */
  async linkByQr(browser: Browser, phoneDigits: string) {
    const phone = await SimulatedPhone.open(browser);
    try {
      await phone.scan(await this.qrText(), phoneDigits);
    } finally {
      await phone.close();
    }
    await this.expectLinked(phoneDigits);
  }

  async expectActive() {
    await expect(this.scope.getByTestId('activation-active')).toBeVisible();
    await expect(this.root).toHaveAttribute('data-activation-state', 'active');
  }

  async expectChannel(channel: 'live' | 'polling') {
    await expect(this.root).toHaveAttribute('data-channel', channel);
  }
}

/** The simulated phone: opens what the QR encodes, links a number, types pair codes. */
export class SimulatedPhone {
  constructor(private readonly page: Page) {}

  static async open(browser: Browser): Promise<SimulatedPhone> {
    const context = await browser.newContext();
    return new SimulatedPhone(await context.newPage());
  }

  async scan(qrText: string, phoneDigits: string) {
    await this.page.goto(qrText);
    await this.page.getByTestId('sim-phone-number').fill(phoneDigits);
    await this.page.getByTestId('sim-link').click();
    await expect(this.page.getByTestId('sim-linked')).toBeVisible();
  }

  async enterPairCode(code: string) {
    await this.page.goto(`${APP_URL}/dev/phone`);
    await this.page.getByTestId('sim-pair-code').fill(code);
    await this.page.getByTestId('sim-enter-code').click();
    await expect(this.page.getByTestId('sim-linked')).toBeVisible();
  }

  /** WhatsApp → Linked devices → Log out, on the salon's phone. */
  async unlink(salonId: number) {
    await this.page.goto(`${APP_URL}/dev/phone?salon=${salonId}`);
    await this.page.getByTestId('sim-unlink').click();
    await expect(this.page.getByTestId('sim-unlinked')).toBeVisible();
  }

  /** The messages this phone number received, newest first (opening them sends read receipts). */
  async inbox(phoneDigits: string): Promise<Locator> {
    await this.page.goto(`${APP_URL}/dev/phone/messages?phone=${phoneDigits}`);
    return this.page.getByTestId('sim-message');
  }

  /** Answers `salon` from the inbox open now (after `inbox`), as the client types in WhatsApp. */
  async reply(salon: number, text: string) {
    const form = this.page.locator('form', { has: this.page.locator(`#reply-${salon}`) });
    await form.getByTestId('sim-reply-text').fill(text);
    await form.getByTestId('sim-reply').click();
    await expect(this.page.getByTestId('sim-done')).toBeVisible();
  }

  async close() {
    await this.page.context().close();
  }
}

/** The operator account end2end/playwright.config.ts gives the server (`OPS_OPERATORS`). */
export const OPERATOR = { name: 'e2e-operator', password: 'e2e-operator-passphrase' };

/** The operator's console (`/ops`), in its own browser context (its own cookies). */
export class OpsConsole {
  constructor(readonly page: Page) {}

  static async open(browser: Browser): Promise<OpsConsole> {
    const context = await browser.newContext({ locale: 'ru-RU' });
    return new OpsConsole(await context.newPage());
  }

  async waitForHydration() {
    await expect(this.page.locator('body[data-hydrated="true"]')).toHaveCount(1);
  }

  async signIn() {
    await this.page.goto(`${APP_URL}/ops`);
    await expect(this.page).toHaveURL(/\/ops\/login$/);
    await this.page.locator('input[name="name"]').fill(OPERATOR.name);
    await this.page.locator('input[name="password"]').fill(OPERATOR.password);
    await this.page.getByTestId('ops-sign-in-submit').click();
    await expect(this.page.getByTestId('ops-operator').first()).toHaveText(OPERATOR.name);
  }

  /** Searches the list (and optionally narrows it to salons that need attention). */
  async search(text: string, filters: { attention?: boolean; whatsapp?: string } = {}) {
    await this.page.getByTestId('ops-search').fill(text);
    if (filters.whatsapp !== undefined) {
      await this.page.getByTestId('ops-filter-whatsapp').selectOption(filters.whatsapp);
    }
    if (filters.attention) {
      await this.page.getByTestId('ops-filter-attention').check();
    }
    await this.page.getByTestId('ops-search-submit').click();
    await expect(this.page.getByTestId('ops-total')).toBeVisible();
  }

  async openSalon(salonId: number) {
    await this.page.getByTestId('ops-salon-row').getByRole('link', { name: String(salonId) }).click();
    await expect(this.page.getByTestId('ops-salon')).toBeVisible();
    await this.waitForHydration();
  }

  /** An action with its confirmation step. */
  async act(action: string) {
    await this.page.getByTestId(`ops-action-${action}`).first().click();
    await expect(this.page.getByTestId('ops-confirm')).toBeVisible();
    await this.page.getByTestId('ops-confirm-submit').click();
    await expect(this.page.getByTestId('ops-done')).toBeVisible();
  }

  async close() {
    await this.page.context().close();
  }
}
