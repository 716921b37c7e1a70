"""Writes the SentencePiece tokenizer fixture of tests/KnowledgeDistillation.Tests/Fixtures/Tokenizers with the real
sentencepiece library (Debian's python3-sentencepiece 0.1.97, the implementation behind Hugging Face's slow
LlamaTokenizer): a small BPE model trained with Llama's settings (identity normalisation, dummy prefix, split digits,
byte fallback), and the ids sentencepiece gives for fixed sentences, so that dotnet test can compare
Microsoft.ML.Tokenizers' LlamaTokenizer with them without Python.

Run: /usr/bin/python3 tests/pretrained-reference/generate_tokenizer_fixtures.py
"""
import json
import os

import sentencepiece as spm

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "KnowledgeDistillation.Tests", "Fixtures", "Tokenizers", "sentencepiece")

CORPUS = """The teacher is a large model and the student is a small one.
Knowledge distillation trains the student to match the teacher's output distribution.
A temperature above one softens both distributions before they are compared.
The student keeps most of the teacher's quality at a fraction of its size and cost.
In 2026 most teachers are decoders with rotary position embeddings and grouped-query attention.
Sequence-level distillation trains on the teacher's generations; on-policy distillation on the student's own.
Numbers such as 3.14159, 2048 and 151936 are split into digits by this tokenizer.
Hello world! Hello, student. Goodbye, teacher.
""".strip().splitlines()

SENTENCES = [
    "Hello world!",
    "The student matches the teacher.",
    "A temperature of 2.5 softens 151936 logits.",
    "  Leading spaces and tabs\tmatter.",
    "Zebras quietly vex ünïcödé bytes: 日本",
]


def main():
    os.makedirs(ROOT, exist_ok=True)
    corpus = os.path.join(ROOT, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(CORPUS * 4) + "\n")
    prefix = os.path.join(ROOT, "tokenizer")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, model_type="bpe", vocab_size=400, character_coverage=1.0,
        normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False, split_digits=True,
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    os.remove(corpus)
    os.remove(prefix + ".vocab")
    os.rename(prefix + ".model", os.path.join(ROOT, "tokenizer.model"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(ROOT, "tokenizer.model"))
    expected = [{"text": s, "ids": sp.encode(s), "decoded": sp.decode(sp.encode(s))} for s in SENTENCES]
    with open(os.path.join(ROOT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"source": "sentencepiece " + spm.__version__ + " SentencePieceProcessor.encode (no BOS/EOS)",
                   "vocab_size": sp.get_piece_size(), "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "unk_id": sp.unk_id(),
                   "sentences": expected}, f, ensure_ascii=False, indent=2)
    with open(os.path.join(ROOT, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
                   "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, f, indent=2)
    for e in expected:
        print(e["text"], e["ids"])


if __name__ == "__main__":
    main()
