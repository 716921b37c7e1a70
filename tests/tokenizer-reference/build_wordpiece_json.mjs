// Writes a BERT (uncased WordPiece) tokenizer.json with Hugging Face's own library, from a vocab.txt: the same
// components bert-base-uncased's published tokenizer.json names (BertNormalizer, BertPreTokenizer, WordPiece,
// BertProcessing, WordPiece decoder). No released BERT tokenizer.json is on npm; this file is the Rust library's own
// serialisation of one.
// Usage: NODE_PATH=<folder with @anush008/tokenizers> node build_wordpiece_json.mjs <vocab.txt> <out tokenizer.json>
import { createRequire } from 'node:module';
import fs from 'node:fs';
const require = createRequire(import.meta.url);
const t = require('@anush008/tokenizers');

const [vocabPath, out] = process.argv.slice(2);
if (!out) { console.error('usage: node build_wordpiece_json.mjs <vocab.txt> <out tokenizer.json>'); process.exit(2); }
const vocab = fs.readFileSync(vocabPath, 'utf8').split(/\r?\n/).filter((line, i, all) => i < all.length - 1 || line.length > 0);
const id = (token) => vocab.indexOf(token);
const model = await t.WordPiece.fromFile(vocabPath, { unkToken: '[UNK]', continuingSubwordPrefix: '##', maxInputCharsPerWord: 100 });
const tokenizer = new t.Tokenizer(model);
tokenizer.setNormalizer(t.bertNormalizer({ cleanText: true, handleChineseChars: true, lowercase: true }));
tokenizer.setPreTokenizer(t.bertPreTokenizer());
tokenizer.setPostProcessor(t.bertProcessing(['[SEP]', id('[SEP]')], ['[CLS]', id('[CLS]')]));
tokenizer.setDecoder(t.wordPieceDecoder('##', true));
tokenizer.addSpecialTokens(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
tokenizer.save(out, false);
console.log(`${out}: ${vocab.length} tokens`);
