"""The README's Python examples run, in order, in one fresh interpreter."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_examples_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 10
    script = "\n".join(f"# --- README block {i}\n{b}" for i, b in enumerate(blocks))
    (tmp_path / "readme_examples.py").write_text(script)
    proc = subprocess.run([sys.executable, "readme_examples.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
