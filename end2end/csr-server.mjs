// Static host for the client-side-rendered build (trunk's dist), as a CDN would serve it:
// files as they are, every other path gets index.html (the app routes in the browser).
// Usage: node csr-server.mjs <dist dir> <port>
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

const [dist, port] = [path.resolve(process.argv[2] ?? 'dist'), Number(process.argv[3] ?? 3302)];
const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.wasm': 'application/wasm',
  '.css': 'text/css',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
};
if (!fs.existsSync(path.join(dist, 'index.html'))) {
  console.error(`${dist}/index.html is missing: build the client-side-rendered variant first (trunk build)`);
  process.exit(1);
}

http
  .createServer((request, response) => {
    const pathname = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
    let file = path.join(dist, path.normalize(pathname));
    if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      file = path.join(dist, 'index.html');
    }
    response.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' });
    fs.createReadStream(file).pipe(response);
  })
  .listen(port, '127.0.0.1', () => console.log(`client-side-rendered build from ${dist} on http://127.0.0.1:${port}`));
