// Builds the text corpus on which tokenizer.json support is compared with Hugging Face's own tokenizers.
// Sources on a Debian machine: gettext catalogues (real translations in many scripts, with their \n, \t and
// format strings), Reuters news from the weka package (digits, abbreviations), source code (indentation runs),
// and hand-written hostile lines (emoji sequences, decomposed accents, astral letters, lone surrogates, special
// token strings written in the text). A seeded generator makes the choice repeatable.
// A text that is not valid UTF-16 (lone surrogates) is stored as an array of its UTF-16 code units.
// Usage: node build_corpus.mjs <repo root> <out corpus.json>
import fs from 'node:fs';
import path from 'node:path';

const [repo, out] = process.argv.slice(2);
if (!repo || !out) { console.error('usage: node build_corpus.mjs <repo root> <out corpus.json>'); process.exit(2); }

let seed = 20261203;
const random = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
const pick = (array, n) => { const copy = [...array]; const chosen = []; while (chosen.length < n && copy.length) chosen.push(copy.splice(Math.floor(random() * copy.length), 1)[0]); return chosen; };

// A gettext .mo file: magic, revision, count, offsets of the original and the translated string tables.
function readMo(file) {
  const b = fs.readFileSync(file);
  const little = b.readUInt32LE(0) === 0x950412de;
  const u32 = (at) => little ? b.readUInt32LE(at) : b.readUInt32BE(at);
  const count = u32(8), originals = u32(12), translations = u32(16);
  const pairs = [];
  for (let i = 0; i < count; i++) {
    const read = (table) => b.subarray(u32(table + 8 * i + 4), u32(table + 8 * i + 4) + u32(table + 8 * i)).toString('utf8');
    const original = read(originals), translated = read(translations);
    if (original.length > 0) pairs.push([original.split('\0')[0], translated.split('\0')[0]]);
  }
  return pairs;
}

const languages = ['ja', 'zh_CN', 'zh_TW', 'ko', 'ru', 'uk', 'ar', 'fa', 'he', 'hi', 'bn', 'ta', 'th', 'vi', 'el', 'ka', 'hy', 'am',
  'de', 'fr', 'es', 'pt_BR', 'it', 'pl', 'cs', 'tr', 'hu', 'fi', 'sv', 'ro', 'eo', 'ga', 'is', 'lt', 'lv', 'sr', 'bg', 'km', 'my', 'si'];
const translated = [], english = [];
for (const language of languages) {
  const folder = `/usr/share/locale/${language}/LC_MESSAGES`;
  if (!fs.existsSync(folder)) continue;
  const pairs = fs.readdirSync(folder).filter(f => f.endsWith('.mo')).sort().flatMap(f => readMo(path.join(folder, f)));
  translated.push(...pick(pairs.map(p => p[1]).filter(t => t.length > 0 && t.length < 400), 40));
  english.push(...pick(pairs.map(p => p[0]).filter(t => t.length < 400), 16));
}

// Reuters-21578 texts (ARFF, one quoted text per row).
const reuters = [];
const arff = '/usr/share/doc/weka/examples/ReutersGrain-train.arff';
if (fs.existsSync(arff)) {
  const texts = fs.readFileSync(arff, 'utf8').split('\n').filter(l => l.startsWith("'")).map(l => l.slice(1, l.lastIndexOf("'")).replace(/\\n/g, '\n').replace(/\\'/g, "'"));
  for (const text of pick(texts, 250)) {
    const words = text.split(' ');
    const start = Math.floor(random() * Math.max(1, words.length - 60));
    reuters.push(words.slice(start, start + 10 + Math.floor(random() * 60)).join(' '));
  }
}

// Source code: 1 to 8 consecutive lines of this repository's C# and of PyTorch's Python.
function codeFiles(folder, extension, limit) {
  const found = [];
  const walk = (dir) => { for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.name === 'bin' || e.name === 'obj' || e.name.startsWith('.')) continue;
    const full = path.join(dir, e.name);
    if (e.isDirectory()) walk(full); else if (full.endsWith(extension)) found.push(full);
  } };
  if (fs.existsSync(folder)) walk(folder);
  return pick(found, limit);
}
const code = [];
for (const file of [...codeFiles(path.join(repo, 'src'), '.cs', 120), ...codeFiles('/usr/lib/python3/dist-packages/torch/nn', '.py', 120)]) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  for (let k = 0; k < 2; k++) {
    const start = Math.floor(random() * lines.length), length = 1 + Math.floor(random() * 8);
    const snippet = lines.slice(start, start + length).join('\n');
    if (snippet.trim().length > 0) code.push(snippet);
  }
}

// Lines written to break tokenizers: each names what it probes.
const hostile = [
  '', ' ', '  ', '\t', '\n', '\r\n', '   leading and trailing   ', 'a  b   c    d', 'tab\there\t\tand\t\t\tthere', 'line\nbreaks\n\n\nand\r\nCRLF\r\n',
  'non\u00a0breaking\u00a0space', 'ideographic\u3000space', 'line\u2028separator\u2029paragraph', 'thin\u2009space\u200aand\u202fnarrow',
  'zero\u200bwidth\u200cnon\u200djoiner', '\ufeffbyte order mark', 'soft\u00adhyphen', 'left\u200eto\u200fright marks', '\u202eright-to-left override',
  'caf\u00e9 vs cafe\u0301', 'A\u030a vs \u00c5 vs \u212b', 'n\u0303o\u0303 combining tildes', 'Z\u0351\u0308\u0310a\u0322\u0317l\u0334\u0361g\u0340\u0346o\u0489',
  '\uac00\ud7a3 Hangul and \u1100\u1161\u11a8 jamo', 'Stra\u00dfe STRASSE \u1e9e', '\u0130stanbul \u0131 i\u0307', '\u03a3\u039f\u03a6\u039f\u03a3 \u03c3\u03bf\u03c6\u03cc\u03c2',
  'ﬁ ﬂ ligatures ﬃ', '①②③ ⅫⅣ ¼½¾ ²³', '１２３ ＡＢＣ ｱｲｳ fullwidth', '٣٤٥ ४५६ ๑๒๓ other digits', '12345678901234567890', '3.14159265358979 1e-10 -0.5 +7',
  '1,234,567.89 $100 €50 £20 ¥1000', '2026-12-03T09:19:14Z', '192.168.0.1:8080', 'v1.2.3-beta+build.42',
  '😀 😃 😄', '👍🏽 👍🏿 skin tones', '👨‍👩‍👧‍👦 family', '🏳️‍🌈 🏴‍☠️', '🇫🇷🇯🇵🇺🇸 flags', '❤️ ❤ ♥', '🤗🤗🤗', 'text🙂text', '#️⃣ *️⃣ 1️⃣',
  '𝐀𝐁𝐂 𝑎𝑏𝑐 𝕏 mathematical letters', '𠀀𠀁 𪚥 CJK extension B', '𓀀𓁐 hieroglyphs', '𐌰𐌱 Gothic', '𝟎𝟏𝟐 math digits',
  '日本語のテキストです。', '中文文本，包括标点符号！', '한국어 텍스트입니다.', 'ภาษาไทยไม่มีช่องว่าง', 'Tiếng Việt có dấu', 'العربية من اليمين', 'עברית',
  'ひらがなカタカナ漢字ｶﾀｶﾅ', '混合mixed文字text', 'Ελληνικά', 'Русский текст', 'हिन्दी पाठ',
  '<s>', '</s>', '<unk>', '<s> text after bos', 'text<s>inside</s>text', '<|endoftext|>', 'a<|endoftext|>b', '<|im_start|>user\nhi<|im_end|>',
  '<bos>hello<eos>', '<pad><mask>', '[CLS] [SEP] [MASK] [PAD] [UNK]', '<|begin_of_text|>x<|eot_id|>', '<｜begin▁of▁sentence｜>deep',
  '▁ literal metaspace ▁▁', 'Ġ Ċ literal byte-level marks', '<0x41> literal byte token', '##suffix', '  ##x',
  "don't won't it's we'll they're I'd I'm you've", "DON'T WON'T IT'S", "'s 's' ''", 'rock ’n’ roll “quotes” «guillemets»',
  'def f(x):\n    return x ** 2  # square\n', 'for (int i = 0; i < n; i++) { sum += a[i]; }', '<div class="x">&amp;&lt;</div>', '{"key": [1, 2, {"a": null}]}',
  'https://example.com/path?query=1&b=%20#frag', 'user@example.org', '~!@#$%^&*()_+`-={}|[]\\:";\'<>?,./', '...', '—–-', '……', '!!!???',
  'a'.repeat(300), 'ab'.repeat(120), ' '.repeat(50) + 'x', 'x' + ' '.repeat(50), '\n'.repeat(20), '\t'.repeat(12) + 'indented',
  '0'.repeat(40), '9'.repeat(7) + ' ' + '1'.repeat(4), 'supercalifragilisticexpialidocious antidisestablishmentarianism',
  'lone high \ud800 surrogate', 'lone low \udc00 surrogate', 'reversed \udc00\ud800 pair', '\ud83d', 'end \ud83d',
  '\u0000 null and \u0001 control \u001f chars \u007f', 'bell\u0007 escape\u001b[0m', '\ufffd replacement char', '\uffff noncharacter', '\ue000 private use',
];

const corpus = [...translated, ...english, ...reuters, ...code, ...hostile];
// JSON readers differ on lone surrogates (System.Text.Json refuses them), so a text that is not valid UTF-16 is written as its code units.
const wellFormed = (t) => !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(t);
const stored = corpus.map(t => wellFormed(t) ? t : Array.from(t, c => c.charCodeAt(0)));
fs.writeFileSync(out, JSON.stringify({ sources: { translated: translated.length, english: english.length, reuters: reuters.length, code: code.length, hostile: hostile.length }, texts: stored }, null, 0));
console.log(`${corpus.length} texts: ${translated.length} translated, ${english.length} English UI, ${reuters.length} Reuters, ${code.length} code, ${hostile.length} hostile; ${corpus.reduce((s, t) => s + t.length, 0)} chars`);
