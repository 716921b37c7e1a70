// Writes a Unigram tokenizer.json with Hugging Face's own library. No released Unigram tokenizer.json (T5, ALBERT)
// is on npm, so the pieces are Mistral-7B's 32,000 (SentencePiece pieces with ▁ and <0xNN> byte pieces) with scores
// -ln(id + 2) rounded to 4 decimals — a valid unigram language model (later, rarer pieces score lower) — and the Rust
// library's Unigram model, Metaspace pre-tokenizer and decoder, and byte fallback do the rest. The rounding matters:
// the Rust library parses JSON numbers with serde_json's fast float parser, which can miss the nearest double by one
// bit for long decimals, and one bit decides between two splits of exactly equal score; short decimals parse exactly
// in every reader.
// Usage: NODE_PATH=<folder with @anush008/tokenizers> node build_unigram_json.mjs <Mistral tokenizer.json> <out tokenizer.json>
import { createRequire } from 'node:module';
import fs from 'node:fs';
const require = createRequire(import.meta.url);
const t = require('@anush008/tokenizers');

const [mistralPath, out] = process.argv.slice(2);
if (!out) { console.error('usage: node build_unigram_json.mjs <Mistral tokenizer.json> <out tokenizer.json>'); process.exit(2); }
const vocab = JSON.parse(fs.readFileSync(mistralPath, 'utf8')).model.vocab;
const pieces = Object.entries(vocab).sort((a, b) => a[1] - b[1]).map(([piece, id]) => [piece, -Math.round(Math.log(id + 2) * 1e4) / 1e4]);
const tokenizer = new t.Tokenizer(t.Unigram.init(pieces, { unkId: 0, byteFallback: true }));
tokenizer.setPreTokenizer(t.metaspacePreTokenizer('\u2581', 'always'));
tokenizer.setDecoder(t.sequenceDecoder([t.metaspaceDecoder('\u2581', 'always'), t.byteFallbackDecoder(), t.fuseDecoder()]));
tokenizer.addSpecialTokens(['<unk>', '<s>', '</s>']);
tokenizer.save(out, false);
console.log(`${out}: ${pieces.length} pieces`);
