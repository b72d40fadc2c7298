import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NETC = Path(sys.executable).parent / "netc"


def expectations(path: Path):
    """The `# expect:` / `# expect-error:` lines of a spec's leading comment block."""
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"#\s*(expect|expect-error):\s*(.*)$", line)
        if not m:
            if line.strip() and not line.startswith("#"):
                break
            continue
        out.append((m.group(1), m.group(2).strip()))
    return out


def run_netc(*args, timeout=60):
    return subprocess.run([str(NETC), *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def netc():
    return run_netc


@pytest.fixture(scope="module")
def two_torch_threads():
    """torch on 2 threads (this machine's cores) for a module's tests, restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
