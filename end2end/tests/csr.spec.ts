import { test, expect, type APIRequestContext } from '@playwright/test';
import { CSR_URL, SANDBOX_URL } from '../playwright.config';
import { Marketplace, Onboarding, freshSalonId } from './pages';

// The client-side-rendered variant (`trunk build`): static files on their own origin, calling the
// server functions and the live channel on the app's origin (CORS), as a static host would.

/** "Подключить" in the sandbox, followed by hand up to the token our redirect hands out. */
async function onboardingToken(request: APIRequestContext, salon: number) {
  const toApp = await request.get(`${SANDBOX_URL}/connect?ids=${salon}`, { maxRedirects: 0 });
  expect(toApp.status()).toBe(303);
  const toPage = await request.get(toApp.headers()['location'], { maxRedirects: 0 });
  expect(toPage.status()).toBe(303);
  const token = new URL(toPage.headers()['location'], SANDBOX_URL).searchParams.get('token');
  expect(token).toBeTruthy();
  return token as string;
}

test.skip(
  !process.env.E2E_CSR_DIST,
  'E2E_CSR_DIST names a trunk build made with AI_ADMIN_API_URL=http://127.0.0.1:3300 (scripts/test.sh does)',
);

test.beforeEach(async ({ page }) => {
  await new Marketplace(page).resetFaults();
});

test('the client-side-rendered build on a static host links and activates a salon', async ({ page, browser }) => {
  const salon = freshSalonId();
  const token = await onboardingToken(page.request, salon);
  await page.goto(`${CSR_URL}/marketplace/onboarding?token=${encodeURIComponent(token)}`);
  const onboarding = new Onboarding(page);
  await expect(onboarding.root).toBeVisible();
  await expect(page).not.toHaveURL(/token=/);
  await onboarding.expectChannel('live');
  await onboarding.linkByQr(browser, '79993334455');
  await onboarding.expectActive();
  await expect(page.getByRole('heading', { name: 'Интеграция активна' })).toBeVisible();
});
