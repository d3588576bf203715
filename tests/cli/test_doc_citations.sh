#!/usr/bin/env bash
# Every citation of a markdown file in the sources resolves inside the repository (issue 11 item 3):
#   1. each `NAME.md` or `dir/NAME.md` named in a tracked file (code, tests, scripts, configs, READMEs; not the
#      notes in docs/, which cite upstream repositories, nor the third-party samples in tests/data/) is a file of
#      the repository: a path from the root or from the citing file's folder, or for a bare name a tracked file of
#      that name; never a machine path (/..., ~/...);
#   2. the spec notes are cited as `docs/NAME.md` (not `NAME.md`, not `NAME 5.3`; names of notes that are not in
#      the repository, anchors.md and aesthetics.md, are refused), and `docs/NAME.md section N` or
#      `sections A-B and C` names headings that exist in that file (`## N.` / `### N.M`);
#   3. README.md's Layout block names every top-level folder of the tree, and the paths it names exist;
#   4. the checker finds the broken citations of a small fixture (so a checker that accepts everything fails).
# Not repository files, hence not checked: the reports our scripts write (summary.md, results.md) and other
# repositories' files named with their repository (karpathy/llama2.c `doc/stories260K.md`).
# Usage: test_doc_citations.sh BIN_DIR SOURCE_DIR
set -uo pipefail
source "$(dirname "$0")/train_test_lib.sh"
cli_test_init doc_citations "${1:?BIN_DIR}" "${2:?SOURCE_DIR}"

cat > "$work/check.py" <<'PY'
import os, re, subprocess, sys

root = sys.argv[1]
OUTPUT_NAMES = {"summary.md", "results.md"}          # written by scripts/demo.sh, scripts/sweep.sh
EXTERNAL = {"doc/stories260K.md"}                     # karpathy/llama2.c
NOTES_OUTSIDE = {"anchors.md", "aesthetics.md"}       # project notes that are not in the repository

def tracked_files():
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True, check=True).stdout
        files = [f for f in out.decode().split("\0") if f]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith((".git", "build", "out"))]
        files += [os.path.relpath(os.path.join(d, n), root) for n in names]
    return files

files = [f for f in tracked_files() if os.path.isfile(os.path.join(root, f))]
basenames = {os.path.basename(f) for f in files}
notes = {os.path.basename(f) for f in files if f.startswith("docs/") and f.endswith(".md")}

def headings(path):
    nums = set()
    for line in open(path, encoding="utf-8"):
        m = re.match(r"#+\s+(\d+(?:\.\d+)*)[.\s]", line)
        if m:
            nums.add(m.group(1))
    return nums

heading_cache = {}
mention = re.compile(r"(?<![\w./~${}-])([\w./~${}-]*[\w-]+\.md)\b")
section_ref = re.compile(r"\s+(sections?\s+)?(\d+(?:\.\d+)*(?:\s*(?:-|,|and)\s*\d+(?:\.\d+)*)*)")
problems = []
for f in files:
    if f.startswith(("docs/", "tests/data/")) or f == "tests/cli/test_doc_citations.sh":
        continue
    try:
        text = open(os.path.join(root, f), encoding="utf-8").read()
    except (UnicodeDecodeError, OSError):
        continue
    for m in mention.finditer(text):
        cited = m.group(1)
        line = text.count("\n", 0, m.start()) + 1
        where = f"{f}:{line}: {cited}"
        name = os.path.basename(cited)
        if cited.startswith(("/", "~")):
            problems.append(f"{where}: a machine path, not a file of the repository")
            continue
        if name in OUTPUT_NAMES or cited in EXTERNAL:
            continue
        if cited.startswith("./"):
            cited = cited[2:]
        if name in notes or name in NOTES_OUTSIDE:
            if cited != "docs/" + name or name not in notes:
                problems.append(f"{where}: cite the spec notes as docs/NAME.md (docs/ holds: {', '.join(sorted(notes))})")
                continue
            # docs/NAME.md section N: the heading must exist. Comment leaders of a wrapped line are ignored.
            after = re.sub(r"\n\s*(//|#|\*)?", " ", text[m.end():m.end() + 80])
            s = section_ref.match(after)
            if s:
                if not s.group(1):
                    problems.append(f"{where}{s.group(0)}: write 'section {s.group(2)}'")
                    continue
                heads = heading_cache.setdefault(name, headings(os.path.join(root, "docs", name)))
                for num in re.findall(r"\d+(?:\.\d+)*", s.group(2)):
                    if num not in heads:
                        problems.append(f"{where} section {num}: no such heading in docs/{name}")
            continue
        here = os.path.dirname(f)
        if "/" in cited:
            ok = any(os.path.isfile(os.path.normpath(os.path.join(root, base, cited))) for base in ("", here))
        else:
            ok = name in basenames
        if not ok:
            problems.append(f"{where}: no such file in the repository")
    # A note cited without .md ("nf4-spec 5.3").
    for stem in sorted(n[:-3] for n in notes | NOTES_OUTSIDE):
        for m in re.finditer(r"(?<![\w./-])" + re.escape(stem) + r"\s+(?:sections?\s+)?\d+(?:\.\d+)*", text):
            line = text.count("\n", 0, m.start()) + 1
            problems.append(f"{f}:{line}: {m.group(0)}: cite as docs/{stem}.md section N")
# README's Layout block names every top-level folder of the tree, and every path it names exists.
readme = os.path.join(root, "README.md")
if os.path.isfile(readme):
    block = re.search(r"^## Layout\n+```\n(.*?)^```", open(readme, encoding="utf-8").read(), re.S | re.M)
    if not block:
        problems.append("README.md: no ## Layout section with a code block")
    else:
        tops = sorted({f.split("/")[0] for f in files if "/" in f})
        named = re.findall(r"(?<![\w./-])([.\w-]+/[\w./-]*)", block.group(1))
        for top in tops:
            if not any(n.split("/")[0] == top for n in named):
                problems.append(f"README.md Layout: the folder {top}/ is not named")
        for n in named:
            if n.split("/")[0] in tops and not os.path.exists(os.path.join(root, n)):
                problems.append(f"README.md Layout: {n} does not exist")
for p in problems:
    print(p)
print(f"{len(problems)} problem(s) in {len(files)} files")
sys.exit(1 if problems else 0)
PY

echo "== the repository's citations"
if python3 "$work/check.py" "$src" > "$work/repo.out" 2>&1; then
  tail -n 1 "$work/repo.out"
else
  cat "$work/repo.out"
  fail "citations that do not resolve (above)"
fi

echo "== the checker on a fixture with broken citations"
fx="$work/fixture"
mkdir -p "$fx/docs" "$fx/src" "$fx/tests/data/x"
printf '# Spec\n\n## 1. One\n\n### 1.2 One two\n\n## 3. Three\n' > "$fx/docs/spec.md"
printf 'see README.md\n' > "$fx/tests/data/x/SOURCE.md"
cat > "$fx/src/good.cpp" <<'EOF'
// docs/spec.md section 1.2; docs/spec.md sections 1-3; (docs/spec.md section 3.) the samples: SOURCE.md,
// tests/data/x/SOURCE.md, ../tests/data/x/SOURCE.md; writes out/summary.md; llama2.c doc/stories260K.md.
// A wrapped one: docs/spec.md
// section 1.
EOF
cat > "$fx/src/bad.cpp" <<'EOF'
// 1 docs/spec.md section 2.1       (no such heading)
// 2 docs/spec.md sections 1-4      (4: no such heading)
// 3 spec.md section 1              (not docs/)
// 4 /work/shared/docs/spec.md      (a machine path)
// 5 anchors.md section 3           (a note not in the repository)
// 6 docs/missing.md                (no such file)
// 7 tests/data/y/SOURCE.md         (no such file)
// 8 docs/spec.md 1.2               (write "section")
// 9 NOTES.md                       (no such file)
// 10 spec 1.2                      (not docs/spec.md)
EOF
rc=0; python3 "$work/check.py" "$fx" > "$work/fixture.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "checker on the fixture: exit $rc, expected 1"
grep -q '^src/good.cpp' "$work/fixture.out" && fail "good citations refused: $(grep '^src/good.cpp' "$work/fixture.out")"
for n in 1 2 3 4 5 6 7 8 9 10; do
  grep -q "^src/bad.cpp:$n:" "$work/fixture.out" || fail "bad citation $n of the fixture not found: $(sed -n "${n}p" "$fx/src/bad.cpp")"
done
[ "$(grep -c '^src/bad.cpp' "$work/fixture.out")" = 10 ] || fail "expected 10 problems in the fixture: $(cat "$work/fixture.out")"

finish
