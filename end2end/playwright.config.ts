import { defineConfig } from '@playwright/test';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

// The app under test: the server binary ($SERVER_BIN, by default the release build) and the site
// cargo leptos built (release WASM), started here with fast simulator timing, its own
// SQLite file and the YClients sandbox on a second origin (for the cross-origin iframe).
const appPort = Number(process.env.E2E_APP_PORT ?? 3300);
const sandboxPort = Number(process.env.E2E_SANDBOX_PORT ?? 3301);
export const APP_URL = `http://127.0.0.1:${appPort}`;
export const SANDBOX_URL = `http://127.0.0.1:${sandboxPort}`;
// The client-side-rendered build (`trunk build`, built with AI_ADMIN_API_URL=APP_URL), served as
// static files from a third origin; only when E2E_CSR_DIST names it (scripts/test.sh does).
const csrPort = Number(process.env.E2E_CSR_PORT ?? 3302);
export const CSR_URL = `http://127.0.0.1:${csrPort}`;
const csrDist = process.env.E2E_CSR_DIST;
// nginx in front of the app with the production locations (deploy/nginx/), plain HTTP on a
// fourth port; only when E2E_NGINX names the binary (scripts/test.sh does).
const proxyPort = Number(process.env.E2E_PROXY_PORT ?? 3303);
export const PROXY_URL = `http://127.0.0.1:${proxyPort}`;
const nginxBin = process.env.E2E_NGINX;
const root = path.resolve(__dirname, '..');
const serverBin = process.env.SERVER_BIN ?? path.join(root, 'target', 'release', 'server');
const dataDir = path.join(os.tmpdir(), `ai-admin-e2e-${process.pid}`);
// A fresh database for every run.
fs.rmSync(dataDir, { recursive: true, force: true });
// The runner makes nginx's folder and starts nginx; a worker (which loads this file again)
// only reads where it is, from the environment the runner passed on.
const inheritedNginxDir = process.env.E2E_NGINX_DIR;
const nginxDir = inheritedNginxDir ?? path.join(os.tmpdir(), `ai-admin-e2e-nginx-${process.pid}`);
// nginx's access log, in deploy/nginx/'s format (proxy.spec.ts reads it for secrets).
export const NGINX_ACCESS_LOG = path.join(nginxDir, 'access.log');
if (nginxBin && !inheritedNginxDir) {
  process.env.E2E_NGINX_DIR = nginxDir;
  fs.rmSync(nginxDir, { recursive: true, force: true });
  fs.mkdirSync(nginxDir, { recursive: true });
  fs.writeFileSync(
    path.join(nginxDir, 'nginx.conf'),
    `worker_processes 1;
pid ${nginxDir}/nginx.pid;
error_log ${nginxDir}/error.log warn;
events { worker_connections 256; }
http {
  include ${path.join(root, 'deploy', 'nginx', 'ai-admin-connect-log.conf')};
  client_body_temp_path ${nginxDir}/body;
  proxy_temp_path ${nginxDir}/proxy;
  fastcgi_temp_path ${nginxDir}/fastcgi;
  uwsgi_temp_path ${nginxDir}/uwsgi;
  scgi_temp_path ${nginxDir}/scgi;
  types { text/html html; application/javascript js; application/wasm wasm; text/css css; }
  upstream ai_admin_connect { server 127.0.0.1:${appPort}; keepalive 8; keepalive_timeout 20s; }
  upstream ai_admin_connect_streams { server 127.0.0.1:${appPort}; }
  server {
    listen 127.0.0.1:${proxyPort};
    access_log ${nginxDir}/access.log ai_admin_connect;
    include ${path.join(root, 'deploy', 'nginx', 'ai-admin-connect-locations.conf')};
  }
}
`,
  );
}

export default defineConfig({
  testDir: './tests',
  fullyParallel: false,
  workers: 1,
  retries: 0,
  timeout: 90_000,
  expect: { timeout: 20_000 },
  reporter: [['list']],
  use: {
    baseURL: APP_URL,
    // Salon admins' browsers ask for Russian; the English spec overrides this.
    locale: 'ru-RU',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    },
  },
  webServer: [
    {
      command: serverBin,
      cwd: root,
      url: `${APP_URL}/marketplace/health`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'pipe',
      stderr: 'pipe',
      env: {
        LEPTOS_SITE_ADDR: `127.0.0.1:${appPort}`,
        LEPTOS_SITE_ROOT: process.env.LEPTOS_SITE_ROOT ?? path.join(root, 'target', 'site'),
        LEPTOS_OUTPUT_NAME: 'ai-admin-connect',
        LEPTOS_ENV: 'PROD',
        BASE_URL: APP_URL,
        DATA_DIR: dataDir,
        DATABASE_URL: `sqlite://${dataDir}/e2e.db?mode=rwc`,
        YCLIENTS_SANDBOX: 'true',
        YCLIENTS_SANDBOX_ADDR: `127.0.0.1:${sandboxPort}`,
        YCLIENTS_PARTNER_TOKEN: 'sandbox-e2e-partner-token',
        YCLIENTS_APPLICATION_ID: '1001',
        JWT_SECRET: 'e2e-jwt-secret-that-is-long-enough-0000',
        WHATSAPP_BACKEND: 'simulator',
        SIMULATOR_FIRST_QR_TTL_MS: '20000',
        SIMULATOR_NEXT_QR_TTL_MS: '4000',
        SIMULATOR_QR_COUNT: '2',
        CALLBACK_RETRY_BASE_MS: '700',
        PAIR_CODE_COOLDOWN_SECS: '5',
        FROZEN_CHECK_INTERVAL_MS: '1000',
        // Booking messages go out at once (production paces a salon's messages 20–30 s apart).
        MESSAGES_POLL_MS: '200',
        MESSAGES_INTERVAL_MS: '0',
        MESSAGES_JITTER_MS: '0',
        // The console's operator (end2end/tests/pages.ts, OPERATOR): `server hash-password` of
        // its passphrase.
        OPS_OPERATORS:
          'e2e-operator:$argon2id$v=19$m=19456,t=2,p=1$fb2owiz1mQs9f5h0wy+v7Q$mhgAxwzdCTCx2Yu+B2tjqQD/Rw4FqqywqghIyj8SszA',
        RUST_LOG: 'info',
        CORS_ORIGINS: `https://yclients.com https://*.yclients.com ${CSR_URL}`,
        // nginx runs on this machine: its X-Forwarded-For is believed (last hop only).
        TRUSTED_PROXY: '127.0.0.1',
        // Every journey enters as the sandbox's one YClients user, many times a minute; a real
        // user enters their branches a few times (the budget is 10 a minute in production).
        RATE_LIMIT_ENTRY_CHECKS_PER_USER_PER_MINUTE: '1000',
        RATE_LIMIT_ENTRY_CHECKS_PER_USER_BURST: '1000',
      },
    },
    ...(nginxBin
      ? [
          {
            command: `${nginxBin} -p ${nginxDir} -c ${nginxDir}/nginx.conf -g "daemon off;"`,
            url: `${PROXY_URL}/marketplace/health`,
            reuseExistingServer: false,
            timeout: 20_000,
            stdout: 'pipe' as const,
            stderr: 'pipe' as const,
          },
        ]
      : []),
    ...(csrDist
      ? [
          {
            command: `node csr-server.mjs ${JSON.stringify(csrDist)} ${csrPort}`,
            cwd: __dirname,
            url: `${CSR_URL}/index.html`,
            reuseExistingServer: false,
            timeout: 20_000,
            stdout: 'pipe' as const,
            stderr: 'pipe' as const,
          },
        ]
      : []),
  ],
});
