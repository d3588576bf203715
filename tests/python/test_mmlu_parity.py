"""MMLU parity: `qlora-eval --mmlu --predictions` against a reference implementation of the same protocol on
transformers, question by question.

The reference (written here, from docs/qlora-reference.md section 6.2 and hendrycks/test evaluate.py / evaluate_flan.py):
  - data: tests/data/mmlu/hendrycks (CSV without header: question, A, B, C, D, answer letter), test split
    (abstract_algebra 100 + management 103 questions), dev split for the shots, read with Python's csv;
  - prompt: "The following are multiple choice questions (with answers) about {format_subject}.\\n\\n", K dev
    shots "{q}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer: {X}\\n\\n", the question ending in "\\nAnswer:";
  - fitting: K is lowered one at a time until BOS + prompt + the longest continuation fits the context
    (2048, capped by the model's max_position_embeddings = 512 for stories260K), keeping the prompt's last
    tokens if even 0 shots do not fit;
  - tokens: transformers' slow LlamaTokenizer (legacy), prompt = [BOS] + encode(prompt), continuations
    encode("A") .. encode("D") (" A" .. " D" with the SentencePiece dummy prefix);
  - score: the summed log-softmax of each continuation's tokens after the prompt, from one full forward of
    prompt + continuation with LlamaForCausalLM in fp32 on the CPU (no cache); prediction = first argmax.
Our side scores with the KV cache and reuses the common prefix of consecutive prompts; the math is the same,
only the floating-point blocking differs (~1e-6 on log-probs). So predictions must be identical, except on a
near-tie: a question whose two best reference log-likelihoods are within TIE (1e-4) may go either way (none is
expected; the count is printed). Log-likelihoods must agree within LOGLIK_TOL.
Runs 5-shot (with and without prefix reuse) and 0-shot.
"""
import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import qlora_testlib as tl

MODEL = os.path.join(tl.SOURCE_DIR, "models", "stories260k")
DATA = os.path.join(tl.SOURCE_DIR, "tests", "data", "mmlu", "hendrycks")
SUBJECTS = ["abstract_algebra", "management"]
CHOICES = ["A", "B", "C", "D"]
TIE = 1e-4         # reference log-likelihood margin under which either prediction is accepted
LOGLIK_TOL = 1e-4  # fp32 log-probs summed over 1-2 tokens: ours (cache, prefix reuse) vs a full forward differ ~1e-5


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [row for row in csv.reader(f)]


def format_subject(subject):
    return "".join(" " + w for w in subject.split("_"))


def format_example(row, include_answer):
    s = row[0]
    for j, letter in enumerate(CHOICES):
        s += f"\n{letter}. {row[j + 1]}"
    s += "\nAnswer:"
    if include_answer:
        s += f" {row[5]}\n\n"
    return s


def gen_prompt(dev_rows, subject, k):
    s = f"The following are multiple choice questions (with answers) about {format_subject(subject)}.\n\n"
    for i in range(k):
        s += format_example(dev_rows[i], True)
    return s


def reference_predictions(model, tok, shots, max_len):
    import torch
    conts = [tok.encode(c, add_special_tokens=False) for c in CHOICES]
    budget = max_len - 1 - max(len(c) for c in conts)
    out = []
    for subject in SUBJECTS:
        dev = read_csv(os.path.join(DATA, "dev", f"{subject}_dev.csv"))
        test = read_csv(os.path.join(DATA, "test", f"{subject}_test.csv"))
        for index, row in enumerate(test):
            k = shots
            while True:
                ids = tok.encode(gen_prompt(dev, subject, k) + format_example(row, False), add_special_tokens=False)
                if len(ids) <= budget or k == 0:
                    break
                k -= 1
            if len(ids) > budget:
                ids = ids[len(ids) - budget:]
            prompt = [tok.bos_token_id] + ids
            # The four sequences prompt + continuation in one batch, right-padded (causal: padding after a
            # row's last token never reaches its real positions), full forward, no cache.
            rows = [prompt + cont for cont in conts]
            width = max(len(r) for r in rows)
            x = torch.tensor([r + [0] * (width - len(r)) for r in rows])
            with torch.no_grad():
                logprobs = torch.log_softmax(model(x).logits.float(), -1)  # (4, width, V)
            logliks = [sum(logprobs[c, len(prompt) - 1 + j, t].item() for j, t in enumerate(cont))
                       for c, cont in enumerate(conts)]
            out.append({"subject": subject, "index": index, "prediction": CHOICES[logliks.index(max(logliks))],
                        "gold": row[5], "loglik": logliks, "shots": k})
    return out


def our_predictions(bin_dir, work, shots, extra=()):
    path = os.path.join(work, f"pred_{shots}{'_'.join(extra)}.jsonl")
    report = os.path.join(work, f"report_{shots}.json")
    r = tl.run([os.path.join(bin_dir, "qlora-eval"), "--model", MODEL, "--mmlu", "--data", DATA, "--split", "test",
                "--shots", shots, "--predictions", path, "--json", report, *extra])
    print("   ", r.stdout.strip().splitlines()[-1])
    with open(path) as f:
        preds = [json.loads(line) for line in f if line.strip()]
    with open(report) as f:
        return preds, json.load(f)


def compare(label, ours, ref):
    assert len(ours) == len(ref), f"{label}: {len(ours)} predictions, reference has {len(ref)}"
    ties = mismatches = 0
    max_diff = 0.0
    for o, r in zip(ours, ref):
        assert (o["subject"], o["index"]) == (r["subject"], r["index"]), f"{label}: order differs at {o} vs {r}"
        assert o["gold"] == r["gold"], f"{label}: gold differs for {r['subject']} #{r['index']}"
        max_diff = max(max_diff, max(abs(a - b) for a, b in zip(o["loglik"], r["loglik"])))
        if o["prediction"] != r["prediction"]:
            best = sorted(r["loglik"], reverse=True)
            if best[0] - best[1] < TIE:
                ties += 1
            else:
                mismatches += 1
                print(f"  {label}: {r['subject']} #{r['index']}: ours {o['prediction']} {o['loglik']}, "
                      f"reference {r['prediction']} {r['loglik']}")
    correct = sum(r["prediction"] == r["gold"] for r in ref)
    print(f"  {label}: {len(ref)} questions, reference accuracy {correct}/{len(ref)}, max |loglik diff| "
          f"{max_diff:.3g}, near-ties {ties}, mismatches {mismatches}")
    assert mismatches == 0, f"{label}: {mismatches} predictions differ from the reference"
    assert max_diff <= LOGLIK_TOL, f"{label}: log-likelihoods differ by {max_diff} > {LOGLIK_TOL}"
    return correct


def main():
    args = tl.parse_args()
    torch, transformers = tl.require("torch", "transformers")
    torch.manual_seed(0)
    # One thread on both sides: a 260K-parameter model gains nothing from more, and OpenMP threads spinning
    # on a loaded 2-core machine slowed this test ten-fold.
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    tok = transformers.LlamaTokenizer(os.path.join(MODEL, "tokenizer.model"), legacy=True)
    model = transformers.LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    max_len = min(2048, model.config.max_position_embeddings)
    work = tl.tempdir("qlora_mmlu_parity_")
    for shots in (5, 0):
        ref = reference_predictions(model, tok, shots, max_len)
        print(f"5-shot prompts fitted with shots {sorted(set(r['shots'] for r in ref))}" if shots else "0-shot")
        ours, report = our_predictions(args.bin_dir, work, shots)
        correct = compare(f"{shots}-shot", ours, ref)
        assert report["correct"] == correct, f"report says {report['correct']} correct, predictions {correct}"
        if shots == 5:
            no_reuse, _ = our_predictions(args.bin_dir, work, shots, ("--no-prefix-cache",))
            compare("5-shot without prefix reuse", no_reuse, ref)


if __name__ == "__main__":
    tl.main(main)
