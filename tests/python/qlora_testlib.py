"""Shared helpers of the live parity tests (run by ctest with the venv's python).

Each test script is a plain program: `python tests/python/test_x.py --bin-dir build/bin`.
It exits 0 on success, 1 on failure (an AssertionError with a message), and 77 (ctest SKIP) when the
venv lacks a reference library; in CI (environment CI=true) a missing library is a failure (exit 1), so
that CI cannot be green with every parity test skipped. Keep them deterministic: fixed seeds, CPU, fp32 unless stated.
"""
import argparse
import importlib
import os
import subprocess
import sys
import tempfile

SKIP = 77
SOURCE_DIR = os.environ.get("QLORA_SOURCE_DIR",
                            os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def parse_args(extra=None):
    p = argparse.ArgumentParser()
    p.add_argument("--bin-dir", default=os.path.join(SOURCE_DIR, "build", "bin"))
    if extra:
        extra(p)
    return p.parse_args()


def in_ci():
    """CI=true, as GitHub Actions, GitLab CI and most CI services set it."""
    return os.environ.get("CI", "").lower() == "true"


def require(*modules):
    """Import the reference libraries or skip the test (exit 77) naming what is missing; in CI, fail (exit 1)."""
    out = []
    for m in modules:
        try:
            out.append(importlib.import_module(m))
        except Exception as e:  # ImportError, or a library failing to initialise
            if in_ci():
                print(f"FAIL: python module {m!r} not available: {e} (CI=true: a parity test may not skip; "
                      f"rerun scripts/setup.sh)")
                sys.exit(1)
            print(f"SKIP: python module {m!r} not available: {e}")
            sys.exit(SKIP)
    return out[0] if len(out) == 1 else out


def run(cmd, check=True, **kw):
    """Run one of our binaries; returns CompletedProcess with text stdout/stderr."""
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def tempdir(prefix="qlora_test_"):
    return tempfile.mkdtemp(prefix=prefix)


def main(fn):
    """Run fn(); print PASS or the failure and exit with the right code."""
    try:
        fn()
    except AssertionError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
    print("PASS")
    sys.exit(0)
