// `node i18n-scripts/i18n.mjs`: regenerate locales/en/*.json from the sources (i18next-parser).
// `node i18n-scripts/i18n.mjs --check`: extract into a temporary directory and fail, naming the
// keys, when the committed files differ: a string the sources show that the locale file lacks, or
// a key the sources no longer use.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.resolve(import.meta.dirname, '..');
const check = process.argv.includes('--check');
const out = check
  ? fs.mkdtempSync(path.join(os.tmpdir(), 'strata-i18n-'))
  : path.join(root, 'locales');

const parser = spawnSync(
  process.execPath,
  [
    path.join(root, 'node_modules/i18next-parser/bin/cli.js'),
    '--silent',
    '-o',
    path.join(out, '$LOCALE/$NAMESPACE.json'),
  ],
  { cwd: root, stdio: 'inherit' },
);
if (parser.status !== 0) process.exit(parser.status ?? 1);
if (!check) process.exit(0);

let failed = false;
const committedDir = path.join(root, 'locales');
for (const lang of fs.readdirSync(out)) {
  for (const file of fs.readdirSync(path.join(out, lang))) {
    const want = JSON.parse(fs.readFileSync(path.join(out, lang, file), 'utf8'));
    const committedPath = path.join(committedDir, lang, file);
    const have = fs.existsSync(committedPath)
      ? JSON.parse(fs.readFileSync(committedPath, 'utf8'))
      : {};
    const missing = Object.keys(want).filter((k) => !(k in have));
    const stale = Object.keys(have).filter((k) => !(k in want));
    const empty = Object.keys(have).filter(
      (k) => k in want && typeof have[k] === 'string' && have[k].trim() === '',
    );
    for (const [what, keys] of [
      ['not in', missing],
      ['stale in', stale],
      ['empty in', empty],
    ])
      for (const k of keys) {
        console.error(`i18n: ${JSON.stringify(k)} ${what} locales/${lang}/${file}`);
        failed = true;
      }
  }
}
fs.rmSync(out, { recursive: true, force: true });
if (failed) {
  console.error('i18n: run `npm run i18n` in console-plugin/ and keep the result');
  process.exit(1);
}
console.log('i18n: locale files match the sources');
