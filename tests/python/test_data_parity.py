"""Data pipeline parity: `qlora-data show --json -n 0` against the QLoRA reference's data code, re-written
here in Python from qlora.py @ 7f4e95a6 (format_dataset, extract_alpaca_dataset, ALPACA_PROMPT_DICT,
extract_unnatural_instructions_data, DataCollatorForCausalLM) with transformers' slow LlamaTokenizer on
tok512.model. For the formats the reference has no loader for (flan-v2, longform, vicuna, raw OASST1 trees)
the mapping documented in include/qlora/data/dataset.h is re-written here independently.

For every fixture in tests/data/datasets (each format, real samples and written ones) the rendered source and
target texts, the input ids and the labels must be equal, example by example; a few fixtures again with short
source/target limits (truncation, EOS cut) and with train_on_source. Exact comparison, no tolerance.
"""
import json
import os

import qlora_testlib as tl

DATA = os.path.join(tl.SOURCE_DIR, "tests", "data", "datasets")
TOKENIZER = os.path.join(tl.SOURCE_DIR, "tests", "data", "tokenizer", "tok512.model")
IGNORE_INDEX = -100

# qlora.py l.517-528, byte for byte.
ALPACA_PROMPT_DICT = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response: "
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response: "
    ),
}


def read_records(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def extract_alpaca(example):
    # qlora.py extract_alpaca_dataset; a missing/null input counts as "" (dataset.h documents this).
    example = dict(example)
    if example.get("input") is None:
        example["input"] = ""
    fmt = ALPACA_PROMPT_DICT["prompt_input" if example.get("input", "") != "" else "prompt_no_input"]
    return {"input": fmt.format(**example), "output": example["output"]}


def extract_unnatural(records, reformulations=False):
    out = []
    for r in records:
        for inst in r["instances"]:
            out.append({"input": inst["instruction_with_input"], "output": inst["output"]})
        if reformulations and r.get("reformulations") is not None:
            for inst in r["reformulations"]:
                out.append({"input": inst["instruction_with_input"], "output": inst["output"]})
    return out


def guanaco(turns):
    return "".join(("### Human: " if human else "### Assistant: ") + text for human, text in turns)


def best_child(children):
    """Top-ranked non-deleted reply (lowest rank; ties in file order); unranked ones only when none is ranked."""
    alive = [c for c in children if not c.get("deleted", False)]
    ranked = [c for c in alive if c.get("rank") is not None]
    if ranked:
        return min(ranked, key=lambda c: c["rank"])  # min keeps the first of equal ranks
    return alive[0] if alive else None


def top_path(root, children_of):
    if root.get("deleted", False):
        return None
    turns, node = [], root
    while node is not None:
        turns.append((node["role"] == "prompter", node["text"]))
        node = best_child(children_of(node))
    return guanaco(turns) if len(turns) >= 2 else None


def oasst_examples(records):
    first = records[0]
    if isinstance(first.get("prompt"), dict):  # nested trees
        paths = [top_path(r["prompt"], lambda n: n["replies"]) for r in records]
    elif "message_id" in first:  # flat messages
        by_parent = {}
        for m in records:
            by_parent.setdefault(m["parent_id"], []).append(m)
        paths = [top_path(m, lambda n: by_parent.get(n["message_id"], [])) for m in records if m["parent_id"] is None]
    else:  # guanaco rows: qlora.py format_dataset oasst1 branch
        return [{"input": "", "output": r["text"]} for r in records]
    return [{"input": "", "output": p} for p in paths if p is not None]


def vicuna_examples(records):
    roles = {"human": True, "user": True, "gpt": False, "assistant": False, "chatgpt": False, "bing": False,
             "bard": False}
    out = []
    for r in records:
        turns = []
        for t in r["conversations"]:
            human = roles[t["from"]]
            if not turns and not human:
                continue
            turns.append((human, t["value"]))
        if turns:
            out.append({"input": "", "output": guanaco(turns)})
    return out


def format_dataset(records, fmt):
    """qlora.py format_dataset (+ the documented mappings of the formats it lacks)."""
    if fmt in ("alpaca", "alpaca-clean"):
        return [extract_alpaca(r) for r in records]
    if fmt == "chip2":
        return [{"input": r["text"].split("\n<bot>: ")[0].replace("<human>: ", ""),
                 "output": r["text"].split("\n<bot>: ")[1]} for r in records]
    if fmt == "self-instruct":
        return [{"input": r["prompt"], "output": r["completion"]} for r in records]
    if fmt == "hh-rlhf":
        return [{"input": "", "output": r["chosen"]} for r in records]
    if fmt == "oasst1":
        return oasst_examples(records)
    if fmt == "unnatural-instructions":
        return extract_unnatural(records)
    if fmt == "flan-v2":
        return [{"input": r["inputs"], "output": r["targets"]} for r in records]
    if fmt == "vicuna":
        return vicuna_examples(records)
    if fmt in ("input-output", "longform"):
        return [{"input": r["input"], "output": r["output"]} for r in records]
    raise AssertionError(f"no reference mapping for {fmt}")


def collate(tokenizer, examples, source_max_len, target_max_len, train_on_source):
    """qlora.py DataCollatorForCausalLM.__call__ up to the padding (predict_with_generate=False)."""
    sources = [f"{tokenizer.bos_token}{e['input']}" for e in examples]
    targets = [f"{e['output']}{tokenizer.eos_token}" for e in examples]
    src = tokenizer(sources, max_length=source_max_len, truncation=True, add_special_tokens=False)
    tgt = tokenizer(targets, max_length=target_max_len, truncation=True, add_special_tokens=False)
    out = []
    for s, t in zip(src["input_ids"], tgt["input_ids"]):
        labels = list(s + t) if train_on_source else [IGNORE_INDEX] * len(s) + list(t)
        out.append((s + t, labels))
    return out


# (fixture, --dataset-format or None to infer, the format the reference mapping uses)
CASES = [
    ("alpaca/alpaca_data_1k.json", "alpaca", "alpaca"),
    ("alpaca/alpaca_en_demo.json", None, "alpaca"),
    ("written/alpaca_missing_input.json", "alpaca-clean", "alpaca"),
    ("self-instruct/p3-t0_train_50k-ag_news_classify.head100.jsonl", None, "self-instruct"),
    ("hh-rlhf/harmless-base-test.head200.jsonl", None, "hh-rlhf"),
    ("oasst/oa_questions_first400.jsonl", None, "input-output"),
    ("oasst1/oasst1-validation-en.head83.messages.jsonl", "oasst1", "oasst1"),
    ("oasst1/oasst-export-en_100_tree.head16.trees.jsonl", None, "oasst1"),
    ("written/oasst_multilang.trees.jsonl", None, "oasst1"),
    ("written/oasst_multilang.messages.jsonl", "oasst1", "oasst1"),
    ("written/guanaco_rows.jsonl", None, "oasst1"),
    ("sharegpt-vicuna/dialogstudio-sharegpt-original_example.json", "vicuna", "vicuna"),
    ("sharegpt-vicuna/fastchat-dummy_conversation.json", None, "vicuna"),
    ("written/unnatural_instructions.jsonl", None, "unnatural-instructions"),
    ("written/longform.jsonl", "longform", "longform"),
    ("written/chip2.jsonl", None, "chip2"),
    ("written/flan_v2.jsonl", None, "flan-v2"),
    ("written/input_output.jsonl", "input-output", "input-output"),
]
# (fixture, source_max_len, target_max_len, train_on_source): truncation of both sides, EOS cut, labels on source.
VARIANTS = [
    ("alpaca/alpaca_data_1k.json", 37, 23, False),
    ("oasst1/oasst-export-en_100_tree.head16.trees.jsonl", 16, 512, False),
    ("written/chip2.jsonl", 9, 11, True),
    ("written/input_output.jsonl", 1024, 256, True),
]


def ours(bin_dir, path, fmt, src_len, tgt_len, train_on_source):
    cmd = [os.path.join(bin_dir, "qlora-data"), "show", "--json", "-n", "0", "--tokenizer", TOKENIZER,
           "--dataset", path, "--source-max-len", src_len, "--target-max-len", tgt_len]
    if fmt:
        cmd += ["--dataset-format", fmt]
    if train_on_source:
        cmd.append("--train-on-source")
    return [json.loads(l) for l in tl.run(cmd).stdout.splitlines()]


def compare(tokenizer, bin_dir, rel, flag, ref_fmt, src_len, tgt_len, train_on_source):
    path = os.path.join(DATA, rel)
    examples = format_dataset(read_records(path), ref_fmt)
    want = collate(tokenizer, examples, src_len, tgt_len, train_on_source)
    got = ours(bin_dir, path, flag, src_len, tgt_len, train_on_source)
    what = f"{rel} (format {flag or 'inferred'}, {src_len}/{tgt_len}, train_on_source={train_on_source})"
    assert len(got) == len(examples), f"{what}: {len(got)} examples, reference {len(examples)}"
    for i, (g, e, (ids, labels)) in enumerate(zip(got, examples, want)):
        assert g["source"] == e["input"], f"{what} #{i} source:\n ours {g['source']!r}\n ref  {e['input']!r}"
        assert g["target"] == e["output"], f"{what} #{i} target:\n ours {g['target']!r}\n ref  {e['output']!r}"
        assert g["input_ids"] == ids, f"{what} #{i} input_ids:\n ours {g['input_ids']}\n ref  {ids}"
        assert g["labels"] == labels, f"{what} #{i} labels:\n ours {g['labels']}\n ref  {labels}"
    n_tokens = sum(len(ids) for ids, _ in want)
    print(f"ok {what}: {len(examples)} examples, {n_tokens} tokens")
    return len(examples)


def test():
    args = tl.parse_args()
    transformers = tl.require("transformers")
    tokenizer = transformers.LlamaTokenizer(TOKENIZER, legacy=True)
    total = 0
    for rel, flag, ref_fmt in CASES:
        total += compare(tokenizer, args.bin_dir, rel, flag, ref_fmt, 1024, 256, False)
    for rel, src_len, tgt_len, train_on_source in VARIANTS:
        ref_fmt = next(f for r, _, f in CASES if r == rel)
        total += compare(tokenizer, args.bin_dir, rel, None, ref_fmt, src_len, tgt_len, train_on_source)
    # The written OASST trees: 6 trees, the deleted root and the all-deleted tree give no example.
    n_trees = len(format_dataset(read_records(os.path.join(DATA, "written/oasst_multilang.trees.jsonl")), "oasst1"))
    assert n_trees == 4, f"written OASST trees: {n_trees} paths, expected 4"
    print(f"{total} examples equal to the reference")


if __name__ == "__main__":
    tl.main(test)
