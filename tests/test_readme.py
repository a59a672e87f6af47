"""README's quick-start commands stay true: CI runs exactly the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_test_command() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme, re.DOTALL)
    assert block is not None, "README.md has no bash quick-start block"
    lines = [line.strip() for line in block.group(1).splitlines()]
    start = lines.index("source .venv/bin/activate") + 1
    return [line for line in lines[start:] if line and not line.startswith("#")]


def test_ci_runs_the_readme_test_command_in_order() -> None:
    command = _readme_test_command()
    assert any(line.startswith("python -m pytest") for line in command)
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    positions = [ci.index(line) for line in command]
    assert positions == sorted(positions)
    assert ci[positions[-1] + 1 :] == [], "CI must end with the README's test command"


def test_readme_main_job_is_the_certify_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert ".venv/bin/helios-conformance run --backend sqlite" in readme
