// Encodes and decodes the corpus with Hugging Face's own tokenizers (the Rust library through its Node binding,
// @anush008/tokenizers) and writes what they give: the ids with the post-processor's special tokens, and the text
// decoded with and without special tokens where it differs from the input.
// Usage: NODE_PATH=<folder with @anush008/tokenizers> node generate_expected.mjs <tokenizer.json> <corpus.json> <out.json> <label>
import fs from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Tokenizer } = require('@anush008/tokenizers');

const [tokenizerPath, corpusPath, out, label] = process.argv.slice(2);
if (!label) { console.error('usage: node generate_expected.mjs <tokenizer.json> <corpus.json> <out.json> <label: where the tokenizer.json comes from>'); process.exit(2); }
const tokenizer = Tokenizer.fromFile(tokenizerPath);
// A text stored as an array holds UTF-16 code units (the corpus's lone surrogates).
const texts = JSON.parse(fs.readFileSync(corpusPath, 'utf8')).texts.map(t => Array.isArray(t) ? String.fromCharCode(...t) : t);

const cases = [];
const started = process.hrtime.bigint();
for (const text of texts) {
  const encoding = await tokenizer.encode(text, null, { addSpecialTokens: true });
  const ids = Array.from(encoding.getIds());
  const decoded = await tokenizer.decode(ids, true);
  const withSpecials = await tokenizer.decode(ids, false);
  const row = { ids };
  if (decoded !== text) row.decoded = decoded;
  if (withSpecials !== decoded) row.withSpecials = withSpecials;
  cases.push(row);
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
fs.writeFileSync(out, JSON.stringify({ tokenizer: label, implementation: '@anush008/tokenizers 0.6.0 (Hugging Face tokenizers 0.22.2)', cases }));
console.log(`${out}: ${cases.length} texts, ${cases.reduce((s, c) => s + c.ids.length, 0)} ids, ${cases.filter(c => c.decoded !== undefined).length} decode differently from the input; ${seconds.toFixed(2)} s`);
