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

// The admin's pages have no client-side router (app::AdminPage): a link to one of the server's
// own routes is an ordinary page load, not a «Страница не найдена» drawn by the browser.
test("the home page's links load the server's pages", async ({ page }) => {
  await page.goto('/');
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1);
  await page.getByRole('link', { name: 'Состояние сервиса' }).click();
  await expect(page).toHaveURL(/\/marketplace\/health$/);
  await expect(page.locator('body')).toContainText('"status"');
  await expect(page.locator('body')).not.toContainText('Страница не найдена');
});

// The release build is split (`cargo leptos build --split`): the admin's pages fetch the main WASM
// only; a console page fetches the console's chunk (and code it shares) as well, then hydrates
// from it.
test('the admin fetches none of the console code; the console loads its chunk and hydrates', async ({ page }) => {
  const wasm: string[] = [];
  page.on('request', (request) => {
    const path = new URL(request.url()).pathname;
    if (path.endsWith('.wasm')) wasm.push(path);
  });
  await page.goto('/');
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1);
  await page.getByTestId('hydration-probe').click();
  await expect(page.getByTestId('hydration-probe')).toContainText('1');
  expect(wasm).toEqual(['/pkg/ai-admin-connect.wasm']);

  wasm.length = 0;
  await page.goto('/ops/login');
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1);
  // The main WASM, the console's chunk and the chunk of code the console shares with the
  // «Сообщения» section (not in the main WASM: the admin's first page needs neither).
  expect(wasm[0]).toBe('/pkg/ai-admin-connect.wasm');
  expect(wasm.some((path) => /^\/pkg\/split_hydrate_console\.wasm$/.test(path))).toBe(true);
  expect(wasm.some((path) => path.includes('messages_panel'))).toBe(false);
  // The language switch is console code from the chunk: it works, so the chunk hydrated the page.
  await page.getByTestId('language-switch').click();
  await expect(page.getByRole('heading', { name: 'Operator console' })).toBeVisible();
});
