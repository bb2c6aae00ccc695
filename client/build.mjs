// Bundles src/main.js into dist/app.js and copies the static files next to it.
// The server serves dist/index.html at "/" and dist/* under "/static/".
//
//   node build.mjs            one production build
//   node build.mjs --watch    rebuild on change (development)
import { build, context } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');
const watch = process.argv.includes('--watch');

/** @type {import('esbuild').BuildOptions} */
const options = {
  absWorkingDir: root,
  entryPoints: ['src/main.js'],
  outfile: 'dist/app.js',
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2020'],
  minify: !watch,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'info',
  define: {
    // protoo-client and mediasoup-client pull in Node-flavoured packages
    // (debug, events); give them what they look for, in a browser.
    'process.env.NODE_ENV': JSON.stringify(watch ? 'development' : 'production'),
    'process.env.DEBUG': 'undefined',
    global: 'globalThis',
  },
};

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
for (const file of ['index.html', 'style.css']) {
  await copyFile(join(root, file), join(dist, file));
}

if (watch) {
  const ctx = await context(options);
  await ctx.watch();
  console.log('watching src/ (index.html and style.css are copied at start only)');
} else {
  await build(options);
}
