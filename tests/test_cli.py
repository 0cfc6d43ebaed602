"""The command group: help without heavy imports, version, config file, environment variables, error lines."""

from __future__ import annotations

import os
import subprocess
import sys

from facekit import __version__


def run_facekit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facekit", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def test_help_does_not_import_torch_or_cv2():
    code = (
        "import sys\nfrom facekit.cli import main\n"
        "try:\n    main(['--help'], prog_name='facekit')\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'cv2', 'numpy', 'h5py') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert "inspect" in out and "pack-rec" in out and "make-example-data" in out


def test_version():
    result = run_facekit("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_unknown_command_is_a_usage_error():
    result = run_facekit("no-such-command")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_library_error_is_one_line_exit_1(tmp_path):
    bad = tmp_path / "data"
    (bad / "train").mkdir(parents=True)
    (bad / "train" / "label.txt").write_text("# a.jpg\n1 2 3\n")
    result = run_facekit("inspect", str(bad))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "label.txt:2: expected 4 or 20 numbers" in result.stdout


def test_not_a_layout_is_a_clean_error(tmp_path):
    result = run_facekit("inspect", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "not a layout facekit knows" in result.stderr


def test_config_file_sets_defaults(cli, tmp_path, shared_data):
    config = tmp_path / "facekit.yaml"
    config.write_text("inspect:\n  json: true\n")
    result = cli("--config", config, "inspect", shared_data / "fixtures/insightface_small_lfw_bin/small_lfw.bin")
    assert result.exit_code == 0
    assert result.output.lstrip().startswith("{")


def test_config_file_errors_name_the_file(cli, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("not-a-command:\n  x: 1\n")
    result = cli("--config", config, "inspect", tmp_path)
    assert result.exit_code == 2
    assert "bad.yaml: unknown command(s) not-a-command" in result.output


def test_environment_variable_sets_option(tmp_path, shared_data):
    path = shared_data / "fixtures/insightface_small_lfw_bin/small_lfw.bin"
    result = run_facekit("inspect", str(path), env={"FACEKIT_INSPECT_JSON": "1"})
    assert result.returncode == 0
    assert result.stdout.lstrip().startswith("{")
