"""Ruff (ruff.toml) finds nothing in the repository: `make test` runs the linter through this test."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(REPO)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"ruff check (fix the mechanical ones with `ruff check --fix`):\n{proc.stdout}{proc.stderr}"
