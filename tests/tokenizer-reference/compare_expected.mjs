// Compares expected-ids files case by case (ids and both decodings): the committed ones against ones made again now.
// Usage: node compare_expected.mjs <committed.json.gz> <fresh.json>
import fs from 'node:fs';
import zlib from 'node:zlib';
const [committedPath, freshPath] = process.argv.slice(2);
const committed = JSON.parse(zlib.gunzipSync(fs.readFileSync(committedPath)).toString('utf8')).cases;
const fresh = JSON.parse(fs.readFileSync(freshPath, 'utf8')).cases;
let differing = 0, ids = 0;
for (let i = 0; i < Math.max(committed.length, fresh.length); i++) {
  if (JSON.stringify(committed[i]) !== JSON.stringify(fresh[i])) { if (differing++ < 3) console.log(`  text ${i}: committed ${JSON.stringify(committed[i])} now ${JSON.stringify(fresh[i])}`); }
  ids += fresh[i]?.ids.length ?? 0;
}
console.log(`${freshPath}: ${fresh.length} texts, ${ids} ids, ${differing} differ from ${committedPath}`);
process.exit(differing === 0 && committed.length === fresh.length ? 0 : 1);
