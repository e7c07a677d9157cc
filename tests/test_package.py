"""Package-level promises: no torch in the core, the README's commands are the ones that run."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jaxconv

ROOT = Path(__file__).resolve().parents[1]

BLOCK_TORCH = "import sys; sys.modules['torch'] = None\n"


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, cwd=ROOT)


def test_jaxconv_imports_and_runs_without_torch():
    proc = _run(
        "import jax.numpy as jnp, jaxconv\n"
        "from jaxconv import nn, functional as F\n"
        "m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 1, 3))\n"
        "print(m(jnp.ones((1, 1, 5, 5))).shape)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'torch' and sys.modules[k] is not None))\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["(1, 1, 5, 5)", "[]"]


def test_blocking_torch_really_blocks():
    # The check above is only meaningful if the block works.
    proc = _run("import torch")
    assert proc.returncode != 0 and "torch" in proc.stderr


def test_version_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert jaxconv.__version__ == meta["project"]["version"]
    assert "torch==2.13.0" in meta["project"]["optional-dependencies"]["torch"]
    assert not any("torch" in d for d in meta["project"]["dependencies"])


def test_readme_quickstart_is_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quickstart, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
