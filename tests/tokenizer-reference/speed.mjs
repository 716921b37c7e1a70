// Throughput of Hugging Face's Rust tokenizers (through @anush008/tokenizers) on the corpus, in MB of UTF-8 text per
// second, through encodeBatch (run with RAYON_NUM_THREADS=1 for one thread). The other half of compare_speed.sh.
// Usage: NODE_PATH=<folder with @anush008/tokenizers> node speed.mjs <corpus.json> <name>=<tokenizer.json>...
import fs from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Tokenizer } = require('@anush008/tokenizers');

const [corpusPath, ...named] = process.argv.slice(2);
const texts = JSON.parse(fs.readFileSync(corpusPath, 'utf8')).texts.map(t => Array.isArray(t) ? String.fromCharCode(...t) : t);
// Both libraries cache the tokens of words they have seen: each round loads the tokenizer afresh, warms up on the first
// 300 texts and times one pass over the rest; the median round is reported.
const warmUp = 300, repeats = 5;
const timed = texts.slice(warmUp);
const megabytes = timed.reduce((s, t) => s + Buffer.byteLength(t, 'utf8'), 0) / 1e6;
for (const [name, path] of named.map(a => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)])) {
  const rounds = [];
  for (let r = 0; r < repeats; r++) {
    const loadStart = process.hrtime.bigint();
    const tokenizer = Tokenizer.fromFile(path);
    const load = Number(process.hrtime.bigint() - loadStart) / 1e9;
    await tokenizer.encodeBatch(texts.slice(0, warmUp), { addSpecialTokens: true });
    const start = process.hrtime.bigint();
    const encodings = await tokenizer.encodeBatch(timed, { addSpecialTokens: true });
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    rounds.push({ seconds, load, ids: encodings.reduce((s, e) => s + e.getIds().length, 0) });
  }
  const { seconds, load, ids } = rounds.sort((a, b) => a.seconds - b.seconds)[Math.floor(repeats / 2)];
  console.log(`rust\t${name}\t${(megabytes / seconds).toFixed(2)} MB/s\t${Math.round(ids / seconds).toLocaleString('en-US')} ids/s\tload ${load.toFixed(2)} s`);
}
