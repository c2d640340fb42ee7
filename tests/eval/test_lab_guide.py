"""A guide that scores served models must start their server first: `kit eval` on a URL that nothing
listens on is an error, and lab 6 once asked for exactly that."""

import re

import pytest

from kit.labs.catalog import load_labs

URL_PORT = re.compile(r"http://127\.0\.0\.1:(\d+)/v1")


def bash_blocks(text: str) -> list[list[str]]:
    """Each ```bash block as its command lines, continuation lines joined, comments dropped."""
    blocks = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines = [line.split("  #")[0].strip() for line in block.replace("\\\n", " ").splitlines()]
        blocks.append([line for line in lines if line and not line.startswith("#")])
    return blocks


def serve_port(line: str) -> int:
    port = re.search(r"--port[ =](\d+)", line)
    return int(port.group(1)) if port else 23333  # kit serve's default


@pytest.mark.parametrize("lab", load_labs(), ids=lambda lab: f"lab{lab.n}")
def test_served_eval_starts_its_server_waits_for_it_and_stops_it(lab):
    for lines in bash_blocks(lab.path.read_text(encoding="utf-8")):
        for i, line in enumerate(lines):
            if not line.startswith("kit eval"):
                continue
            for port in map(int, URL_PORT.findall(line)):
                starts = [j for j, before in enumerate(lines[:i]) if before.startswith("kit serve")
                          and before.endswith("&") and "--no-ui" in before and serve_port(before) == port]
                assert starts, f"{lab.path.name}: `{line}` needs `kit serve --no-ui ... &` on port {port} before it"
                waits = [w for w in lines[starts[-1] + 1:i] if "curl" in w and f":{port}/" in w]
                assert waits, f"{lab.path.name}: wait for port {port} to answer before `{line}`"
                assert any(after.startswith("kill") for after in lines[i + 1:]), \
                    f"{lab.path.name}: stop the server started for `{line}`"
