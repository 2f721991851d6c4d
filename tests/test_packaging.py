"""The import path: `mechsynth.dsl`, `mechsynth.models`, `mechsynth.synth`, over the top-level folders.

`models` and `synth` are among the commonest folder names in machine-learning projects, so the
bare names would be shadowed by a user's own package on `sys.path`. These tests pin the one import
path that cannot be, and that nothing of ours still uses the bare names.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("dsl", "models", "synth")
BARE_IMPORT = re.compile(r"^\s*(from|import)\s+(dsl|models|synth)\b", re.M)


def test_every_package_folder_is_installed_under_mechsynth() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        "mechsynth." + ".".join(init.parent.relative_to(ROOT).parts)
        for folder in FOLDERS for init in (ROOT / folder).rglob("__init__.py")
    }
    assert set(config["packages"]) == on_disk
    assert config["package-dir"] == {f"mechsynth.{f}": f for f in FOLDERS}


def test_no_source_file_imports_a_bare_package_name() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0).strip()}"
        for folder in (*FOLDERS, "tests") for path in (ROOT / folder).rglob("*.py")
        for match in BARE_IMPORT.finditer(path.read_text())
    ]
    assert offenders == []


def test_a_users_own_models_and_synth_packages_do_not_shadow_ours(tmp_path: Path) -> None:
    for name in FOLDERS:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("MINE = True\n")
    script = (
        "import models, synth, dsl\n"
        "assert models.MINE and synth.MINE and dsl.MINE\n"
        "from mechsynth.models import Task, load_target\n"
        "from mechsynth.synth.cli import main\n"
        "from mechsynth import dsl as ours\n"
        "print(ours.parse.__module__, Task.__module__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["mechsynth.dsl.parse", "mechsynth.models.target"]
