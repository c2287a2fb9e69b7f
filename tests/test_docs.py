"""Every code block in the plugin docs runs, so the docs cannot drift from the code.

docs/writing-plugins.md (the tutorial) then docs/plugin-reference.md (which continues its package) are
executed top to bottom in one empty folder, as a reader would:

- a block whose info string has ``title="PATH"`` is written to PATH (``append`` adds to it);
- a ``bash`` block runs line by line (``pip install`` without build isolation or dependencies,
  so it works offline and leaves odnbench alone; the package is uninstalled at the end);
- a block after ``<!-- output -->`` is what the previous command printed: every line of a
  ``text`` block must appear in its output (spacing aside), every object of a ``json`` block
  must match one printed object on the keys it shows;
- ``<!-- exit N -->`` before a ``bash`` block expects that exit status (default 0).

docs/hooks.md and docs/plugins.md hold snippets: their Python blocks are executed as a module
and registered with pluggy as a plugin; their TOML must parse and their shell lines must run.
Any other kind of block fails the test, so nothing in these docs goes unchecked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
FENCE = re.compile(r"^```(.*)$")
DIRECTIVE = re.compile(r"^<!--\s*(output|exit\s+\d+)\s*-->$")
TUTORIAL_DIST = "odnbench-halfdepth"
# Build with the setuptools already installed (offline, fast); without one (Python 3.12+ venvs),
# let pip fetch it.
NO_ISOLATION = "--no-build-isolation " if importlib.util.find_spec("setuptools") else ""


@dataclass
class Block:
    lang: str
    body: str
    line: int
    title: str | None = None
    flags: set[str] = field(default_factory=set)
    directive: str | None = None


def parse_blocks(text: str) -> list[Block]:
    blocks, lines, i, pending = [], text.splitlines(), 0, None
    while i < len(lines):
        stripped = lines[i].strip()
        m = DIRECTIVE.match(stripped)
        if m:
            pending = m.group(1)
        fence = FENCE.match(lines[i])
        if fence:
            info = fence.group(1).strip()
            title = re.search(r'title="([^"]+)"', info)
            words = re.sub(r'title="[^"]*"', "", info).split()
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].rstrip() != "```":
                body.append(lines[i])
                i += 1
            blocks.append(Block(words[0] if words else "", "\n".join(body) + "\n", start,
                                title.group(1) if title else None, set(words[1:]), pending))
            pending = None
        elif stripped and not m:
            pending = None  # a directive applies to the very next block only
        i += 1
    return blocks


def shell_commands(body: str) -> list[str]:
    out, current = [], ""
    for raw in body.splitlines():
        line = raw.rstrip()
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    return out


def for_test(command: str) -> str:
    """The reader's command, made safe to run inside the test environment."""
    py = shlex.quote(sys.executable)
    if command.startswith("pip install "):
        return f"{py} -m pip install -q --no-deps {NO_ISOLATION}" + command[len("pip install "):]
    if command.startswith("pytest"):
        return f"{py} -m pytest -q -p no:cacheprovider" + command[len("pytest"):]
    return command


def run_shell(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(for_test(command), shell=True, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def normalise(text: str) -> str:
    return " ".join(text.split())


def check_output(block: Block, printed: str, where: str) -> None:
    if block.lang == "json":
        expected, actual = json.loads(block.body), json.loads(printed[printed.index("["):])
        # `leaderboard --format json` prints board documents: their rows are what a block lists
        actual = [row for a in actual for row in (a["rows"] if isinstance(a, dict) and "rows" in a else [a])]
        for obj in expected:
            assert any(all(a.get(k) == v for k, v in obj.items()) for a in actual), \
                f"{where}: {obj} not in the printed {actual}"
    else:
        flat = normalise(printed)
        for line in block.body.splitlines():
            if line.strip():
                assert normalise(line) in flat, f"{where}: {line!r} not in the output:\n{printed}"


def test_directives_attach_to_the_next_block():
    text = ("<!-- exit 2 -->\n```bash\nodnbench x\n```\n\n<!-- output -->\n```text\nError\n```\n"
            "```python title=\"a/b.py\" append\nx = 1\n```\n<!-- output -->\nprose\n```text\nno directive\n```\n")
    blocks = parse_blocks(text)
    assert [(b.lang, b.directive, b.title, b.flags) for b in blocks] == [
        ("bash", "exit 2", None, set()), ("text", "output", None, set()), ("python", None, "a/b.py", {"append"}),
        ("text", None, None, set())]
    assert shell_commands("# c\nodnbench compare \\\n  --method x\n\npip list\n") == [
        "odnbench compare    --method x", "pip list"]


def _env(plugins: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["ODNBENCH_LOAD_PLUGINS"] = plugins  # built-ins + the tutorial's package, nothing else installed
    env.pop("ODNBENCH_STRICT_PLUGINS", None)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _uninstall() -> None:
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", TUTORIAL_DIST], capture_output=True)


@pytest.mark.slow
def test_writing_plugins_walkthrough_runs_as_written(tmp_path):
    # The tutorial, then the reference that continues its package, in one folder.
    pages = [(page, b) for page in ("writing-plugins.md", "plugin-reference.md")
             for b in parse_blocks((DOCS / page).read_text())]
    blocks = [b for _, b in pages]
    assert any(b.lang == "bash" and "odnbench compare --method halfdepth --method odn" in b.body for b in blocks)
    env = _env(f"odnbench,{TUTORIAL_DIST}")
    _uninstall()  # a leftover from an interrupted run must not hide a broken pip install
    last_output, last_where = None, None
    try:
        for page, block in pages:
            where = f"docs/{page} line {block.line}"
            if block.title:
                path = tmp_path / block.title
                path.parent.mkdir(parents=True, exist_ok=True)
                if "append" in block.flags:
                    assert path.is_file(), f"{where}: appends to {block.title}, which no earlier block wrote"
                    with open(path, "a") as f:
                        f.write(block.body)
                else:
                    path.write_text(block.body)
            elif block.lang == "bash":
                expect = int(block.directive.split()[1]) if block.directive and block.directive.startswith("exit") else 0
                for command in shell_commands(block.body):
                    started = time.perf_counter()
                    done = run_shell(command, tmp_path, env)
                    print(f"{time.perf_counter() - started:6.1f}s  {command}")  # shown with -s or on failure
                    last_output, last_where = done.stdout + done.stderr, f"{where}: `{command}`"
                    assert done.returncode == expect, f"{last_where} exited {done.returncode}:\n{last_output}"
            elif block.directive == "output" and block.lang in ("text", "json"):
                assert last_output is not None, f"{where}: output block with no command before it"
                check_output(block, last_output, last_where)
            else:
                pytest.fail(f"{where}: a ```{block.lang} block that the test cannot run; give it a title=, "
                            "make it bash, or mark it <!-- output -->")
    finally:
        _uninstall()
    # The walk-through really ranked the reader's method next to ODN.
    stored = [json.loads(p.read_text()) for p in (tmp_path / "odnbench-results").glob("*/result.json")]
    by_method = {}
    for r in stored:
        by_method.setdefault(r["config"]["method"], []).append(r)
    assert {"halfdepth", "halfcut", "odn", "full", "distill", "narrow"} <= set(by_method)
    assert all(r["status"] == "ok" for r in stored), [r["error"] for r in stored if r["status"] != "ok"]
    assert by_method["halfdepth"][0]["plugin"] == "halfdepth"
    assert "halfdepth" in (tmp_path / "odnbench-results" / "leaderboard.md").read_text()
    # The method that sized its network before training: footprint() gave what the harness measured.
    narrow, = by_method["narrow"]
    assert {k: narrow["metrics"][k] for k in ("params", "macs")} == \
        {k: narrow["method_info"][k] for k in ("params", "macs")}
    # The non-ResNet backbone trained, and a method that cuts by block ran on it.
    assert {r["config"]["method"] for r in stored if r["config"]["backbone"] == "mobilenetv3"} == {"full", "halfdepth"}
    # The method with two dependencies sharing `full` counted `full` once.
    distill, = by_method["distill"]
    by_key = {r["key"]: r for r in stored}
    full_key = distill["requires"]["full"]
    assert by_key[distill["requires"]["odn"]]["requires"]["full"] == full_key
    assert [d["method"] for d in distill["cost"]["dependencies"].values()].count("full") == 1
    assert distill["cost"]["sample_steps"] == distill["cost"]["own"]["sample_steps"] + sum(
        by_key[key]["cost"]["own"]["sample_steps"] for key in (full_key, distill["requires"]["odn"]))


def _register_snippet(source: str, where: str) -> list[str]:
    """Execute a snippet as a module and register it with pluggy the way an entry point would."""
    import click

    from odnbench.testing import registry_with

    module = types.ModuleType(f"snippet_{abs(hash(where))}")
    exec(compile(source, where, "exec"), module.__dict__)
    reg = registry_with(module, installed=False)
    names = [f"{kind}:{name}" for kind in reg.items for name in reg.items[kind]]
    group = click.Group("odnbench")
    reg.pm.hook.register_commands(cli=group)
    return names + [f"command:{name}" for name in group.commands]


@pytest.mark.parametrize("doc", ["hooks.md", "plugins.md"])
def test_snippets_are_valid(doc, tmp_path):
    blocks = parse_blocks((DOCS / doc).read_text())
    assert blocks, f"docs/{doc} has no code blocks"
    env = _env("odnbench")
    for block in blocks:
        where = f"docs/{doc} line {block.line}"
        if block.lang == "python":
            assert _register_snippet(block.body, where), f"{where}: the snippet registers nothing"
        elif block.lang == "toml":
            table = tomllib.loads(block.body)
            assert "odnbench" in table["project"]["entry-points"], f"{where}: no odnbench entry point"
        elif block.lang == "bash":
            for command in shell_commands(block.body):
                done = run_shell(command, tmp_path, env)
                assert done.returncode == 0, f"{where}: `{command}` exited {done.returncode}:\n{done.stderr}"
        else:
            pytest.fail(f"{where}: a ```{block.lang} block that the test cannot check")


def test_hooks_md_snippets_cover_every_hook():
    found = set()
    for block in parse_blocks((DOCS / "hooks.md").read_text()):
        if block.lang == "python":
            found |= {n.split(":")[0] for n in _register_snippet(block.body, f"hooks.md:{block.line}")}
    assert found == {"dataset", "backbone", "method", "command"}


def test_the_readme_starts_right():
    """What it is, the two set-up commands (a virtual environment and the CPU-only torch install folded
    into the first), one example output and links; everything else lives in docs/ (and every link resolves)."""
    text = (REPO / "README.md").read_text()
    blocks = parse_blocks(text)
    commands = [b.body.strip() for b in blocks if b.lang == "bash"]
    assert len(commands) == 2, commands
    install, tests = commands
    # in a virtual environment (PEP 668 systems refuse a system-wide install), the headline comparison
    assert install.index("python3 -m venv") < install.index("--extra-index-url https://download.pytorch.org/whl/cpu") \
        < install.index("-e .") < install.index("odnbench compare --method odn --method prune")
    assert tests == "python3 -m pip install -e '.[test]' && python3 -m pytest"  # `-m "not slow"`: the fast tier
    assert 'python -c "import torch; print(torch.__version__, torch.version.cuda)"' in text  # which torch build
    [example] = [b.body for b in blocks if b.lang == "text"]
    assert "odn" in example and "prune" in example
    assert len(text.splitlines()) < 80
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (REPO / target).exists(), f"README links to {target}, which does not exist"


def test_every_relative_link_in_docs_resolves():
    for page in sorted(DOCS.glob("*.md")):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not target.startswith("mailto:"):
                assert (page.parent / target).exists(), f"docs/{page.name} links to {target}, which does not exist"
