#!/usr/bin/env python3
"""Builds data/demo/alpaca_demo.jsonl, the bundled demo dataset, from the Alpaca sample in shared/testdata.

Keeps the 400 shortest-output records (instruction + input + output at most 320 characters, so that with
the bundled 512-piece tokenizer a record fits the demo's 128/128 source/target token budget), in file order,
one JSON object per line with the original keys (instruction, input, output).
Usage: python3 scripts/make_demo_data.py [/path/to/alpaca_data_1k.json]
"""
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "testdata", "alpaca", "alpaca_data_1k.json")
records = json.load(open(src, encoding="utf-8"))
keep = [r for r in records if len(r["instruction"]) + len(r["input"]) + len(r["output"]) <= 320][:400]
out = os.path.join(here, "..", "data", "demo", "alpaca_demo.jsonl")
with open(out, "w", encoding="utf-8") as f:
    for r in keep:
        f.write(json.dumps({"instruction": r["instruction"], "input": r["input"], "output": r["output"]},
                           ensure_ascii=False) + "\n")
print(f"wrote {len(keep)} records to {out}")
