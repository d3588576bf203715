"""Tokenizer parity: qlora-data's Tokenizer against transformers' slow LlamaTokenizer (legacy=True, what the
QLoRA reference loads with use_fast=False) on tok512.model, for every record of the Alpaca samples and the
multilingual OASST sample (each text field, and the collator's "<s>"+source / target+"</s>" strings), plus
edge cases: leading/trailing/only whitespace, literal special tokens inside text, byte fallback, digits.

Encode must give the same ids; decode (with and without skip_special_tokens) the same strings, on the
encoded ids and on random id sequences that mix special tokens and byte pieces.
All comparisons are exact (token ids and strings): no tolerance.
"""
import json
import os
import random

import qlora_testlib as tl

DATA = os.path.join(tl.SOURCE_DIR, "tests", "data")
TOKENIZER = os.path.join(DATA, "tokenizer", "tok512.model")
# Copies of /work/shared/testdata/{alpaca,oasst} (tests/data/datasets/SOURCE.md).
ALPACA = [os.path.join(DATA, "datasets", "alpaca", f) for f in ("alpaca_data_1k.json", "alpaca_en_demo.json")]
OASST = os.path.join(DATA, "datasets", "oasst", "oa_questions_first400.jsonl")

EDGE_TEXTS = [
    "", " ", "  ", "\n", "\t", " leading", "trailing ", "  two  spaces  ", "Hello world!", "Once upon a time",
    "<s>", "</s>", "<unk>", "<s><s>", "a<s>b", "a </s> b", "Hello <s>.", "<s> Below", "x</s>", "< s>", "<s",
    "</s", "<<s>>", "<unk><s></s>", "12345 67.89", "naïve café", "你好，世界", "Привет, мир", "ภาษาไทย", "🙂🚀",
    "\u2581already\u2581marked", "tab\tand\nnewline\r\n", "\\n literal backslash-n", "mixed 中文 and English",
    "### Human: hi### Assistant: hello", "\u00a0non-breaking space", "\ufeffBOM",
]


def collect_texts():
    texts = list(EDGE_TEXTS)
    for path in ALPACA:
        for r in json.load(open(path, encoding="utf-8")):
            for k in ("instruction", "input", "output"):
                texts.append(r[k])
            texts.append("<s>" + r["instruction"])
            texts.append(r["output"] + "</s>")
    for line in open(OASST, encoding="utf-8"):
        r = json.loads(line)
        for k in ("input", "output", "prompt"):
            texts.append(r[k])
        texts.append("<s>" + r["input"])
        texts.append(r["output"] + "</s>")
    return texts


def reference_tokenizer(transformers, **kwargs):
    """transformers.LlamaTokenizer(tok512.model, legacy=True, **kwargs), with one speed-up: the properties
    all_special_tokens / all_special_ids are rebuilt on every access, once per token in decode, which made
    this test take a minute. They cannot change after construction here, so they are computed once; the
    encode and decode code paths are the library's own."""
    base = transformers.LlamaTokenizer

    class Reference(base):
        @property
        def all_special_tokens(self):
            cached = self.__dict__.get("_frozen_special_tokens")
            return cached if cached is not None else base.all_special_tokens.fget(self)

        @property
        def all_special_ids(self):
            cached = self.__dict__.get("_frozen_special_ids")
            return cached if cached is not None else base.all_special_ids.fget(self)

    tok = Reference(TOKENIZER, legacy=True, **kwargs)
    tok.__dict__["_frozen_special_tokens"] = base.all_special_tokens.fget(tok)
    tok.__dict__["_frozen_special_ids"] = base.all_special_ids.fget(tok)
    return tok


def run_tool(args, records):
    d = tl.tempdir()
    inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
    with open(inp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tl.run([os.path.join(args.bin_dir, "qlora-data"), "tokenize", "--tokenizer", TOKENIZER,
            "--input", inp, "--output", out])
    return [json.loads(l) for l in open(out, encoding="utf-8")]


def test():
    args = tl.parse_args()
    transformers = tl.require("transformers")
    assert os.path.exists(TOKENIZER), TOKENIZER
    hf = reference_tokenizer(transformers, add_bos_token=False, add_eos_token=False)
    hf_special = reference_tokenizer(transformers, add_bos_token=True, add_eos_token=True)
    assert hf.all_special_tokens == ["<s>", "</s>", "<unk>"], hf.all_special_tokens

    texts = collect_texts()
    records = [{"text": t} for t in texts]
    # A slice with BOS and EOS added by the tokenizer (add_special_tokens=True with both flags on).
    with_special = list(range(0, len(texts), 7))
    records += [{"text": texts[i], "add_bos": True, "add_eos": True} for i in with_special]
    # Random id sequences: specials at any position, byte pieces that may not form valid UTF-8.
    rng = random.Random(1234)
    random_ids = []
    for n in list(range(0, 12)) + [rng.randrange(12, 80) for _ in range(300)]:
        random_ids.append([rng.choice([0, 1, 2, rng.randrange(3, 259), rng.randrange(259, 512)]) for _ in range(n)])
    records += [{"ids": ids} for ids in random_ids]

    ours = run_tool(args, records)
    assert len(ours) == len(records), f"{len(ours)} lines for {len(records)} records"

    mismatches = []
    def check(what, got, want):
        if got != want and len(mismatches) < 10:
            mismatches.append(f"{what}: ours {got!r}\n    hf   {want!r}")
        return got == want

    n_ids = n_dec = 0
    for i, t in enumerate(texts):
        want = hf.encode(t, add_special_tokens=False)
        n_ids += check(f"encode {t[:60]!r}", ours[i]["ids"], want)
        n_dec += check(f"decode {t[:60]!r}", ours[i]["decoded"], hf.decode(want))
        n_dec += check(f"decode skip {t[:60]!r}", ours[i]["decoded_skip_special"],
                       hf.decode(want, skip_special_tokens=True))
    base = len(texts)
    for k, i in enumerate(with_special):
        want = hf_special.encode(texts[i])
        n_ids += check(f"encode+bos+eos {texts[i][:60]!r}", ours[base + k]["ids"], want)
        n_dec += check(f"decode+bos+eos {texts[i][:60]!r}", ours[base + k]["decoded"], hf.decode(want))
    base += len(with_special)
    for k, ids in enumerate(random_ids):
        # Our tool writes JSON with invalid UTF-8 replaced by U+FFFD; do the same to the reference string.
        want = hf.decode(ids).encode("utf-8", "replace").decode("utf-8", "replace")
        n_dec += check(f"decode random {ids}", ours[base + k]["decoded"], want)
        want = hf.decode(ids, skip_special_tokens=True).encode("utf-8", "replace").decode("utf-8", "replace")
        n_dec += check(f"decode random skip {ids}", ours[base + k]["decoded_skip_special"], want)

    print(f"{len(texts)} texts ({len(with_special)} also with BOS/EOS), {len(random_ids)} random id lists: "
          f"{n_ids} encodes and {n_dec} decodes equal")
    assert not mismatches, "tokenizer differs from transformers LlamaTokenizer:\n" + "\n".join(mismatches)


if __name__ == "__main__":
    tl.main(test)
