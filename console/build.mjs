// Bundles the console into a folder: index.html plus assets/app-HASH.js, assets/style-HASH.css and
// assets/favicon-HASH.svg. Usage: node build.mjs OUT_DIR. The file names carry a hash of their content so
// the server can let browsers cache them forever; index.html (never cached) names the current ones.

import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const outDir = resolve(process.argv[2] || join(here, 'dist'));

const result = await build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.ts', style: 'src/style.css' },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  entryNames: 'assets/[name]-[hash]',
  outdir: outDir,
  metafile: true,
  logLevel: 'warning',
  legalComments: 'none',
});

const outputs = Object.keys(result.metafile.outputs).map((file) => relative(outDir, resolve(here, file)));
const named = (prefix, extension) => {
  const found = outputs.find((file) => basename(file).startsWith(prefix) && file.endsWith(extension));
  if (!found) throw new Error(`esbuild produced no ${prefix}*${extension} (outputs: ${outputs.join(', ')})`);
  return found;
};
// The icon is copied as it is, under a name carrying its hash like the bundles.
const icon = await readFile(join(here, 'favicon.svg'));
const iconName = `assets/favicon-${createHash('sha256').update(icon).digest('hex').slice(0, 8).toUpperCase()}.svg`;
await mkdir(join(outDir, 'assets'), { recursive: true });
await writeFile(join(outDir, iconName), icon);

const page = (await readFile(join(here, 'index.html'), 'utf8'))
  .replace('%APP_JS%', `/console/${named('app-', '.js')}`)
  .replace('%APP_CSS%', `/console/${named('style-', '.css')}`)
  .replace('%ICON%', `/console/${iconName}`);
await mkdir(outDir, { recursive: true });
await writeFile(join(outDir, 'index.html'), page);
