import { test, expect } from '@playwright/test';

test('the home page is server-rendered, then hydrates and reacts', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByRole('heading', { name: 'AI Admin для YClients' })).toBeVisible();
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1);
  const probe = page.getByTestId('hydration-probe');
  await probe.click();
  await probe.click();
  await expect(probe).toContainText('2');
  await expect(page.getByTestId('demo-link')).toHaveAttribute('href', '/demo');
});
