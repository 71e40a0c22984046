"""terrain in another repository: build the wheel, install it into a fresh virtual
environment outside this checkout, and run the property suite in an empty folder.

The wheel is installed without its dependencies, which the new environment reads from the
running one (a .pth line): what is tested is the wheel's own content — the library, the
plugin's entry point, the property suite and the package data — not a second download of
torch. The new environment sees none of this repository's files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.conftest import build_tiny

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(the new environment's python, the environment variables to run it with)."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    _run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
         "-w", str(dist), "-q"],
        cwd=root,
        env=env,
    )  # fmt: skip
    wheels = list(dist.glob("terrain-*.whl"))
    assert len(wheels) == 1, wheels
    target = root / "venv"
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            cwd=root,
            env=env,
        ).strip()
    )
    # the running environment's packages (torch, transformers, ...), after the new one's
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheels[0])],
        cwd=root,
        env=env,
    )
    return python, env


def test_the_wheel_holds_the_plugin_the_suite_and_the_package_data(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    python, env = installed
    code = (
        "import terrain, terrain.plugins, terrain.properties, terrain.fixtures, sys;"
        "from importlib.metadata import entry_points;"
        "from importlib.resources import files;"
        "print(terrain.__file__);"
        "print([e.value for e in entry_points(group='pytest11') if e.name == 'terrain']);"
        "print(files('terrain.fixtures').joinpath('models.yaml').is_file())"
    )
    out = _run([str(python), "-c", code], cwd=tmp_path, env=env).splitlines()
    assert str(REPO) not in out[0]  # the wheel's terrain, not this checkout's
    assert out[1] == "['terrain.plugins']"
    assert out[2] == "True"


def test_another_repository_runs_the_shipped_default_model_and_its_own_checkpoint(
    installed: tuple[Path, dict[str, str]], tmp_path: Path, replica_cache: Path
) -> None:
    """`pytest --pyargs terrain.properties --model minilm` and `--model ./my-checkpoint` in
    an empty folder: both exit 0 and write reports/ there; --help shows the options.

    MiniLM runs its weight properties only (against its shipped baselines): its forward and
    text properties are the main suite's, and they would double this test's two minutes.
    The user's own checkpoint runs the whole shipped suite."""
    python, env = installed
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(build_tiny("bert-tiny", replica_cache), project / "my-checkpoint")
    (project / "my-checkpoint" / "terrain_synthetic.json").unlink()  # a user's own folder
    env = {**env, "TERRAIN_CACHE": str(replica_cache), "HF_HUB_OFFLINE": "1"}
    pytest_cmd = [str(python), "-m", "pytest", "-p", "no:cacheprovider"]
    help_text = _run([*pytest_cmd, "--help"], cwd=project, env=env)
    assert "terrain: geometric properties of checkpoints" in help_text
    assert "terrain_models_file" in help_text
    for model, selection in (("minilm", ("-m", "weights")), ("./my-checkpoint", ())):
        shutil.rmtree(project / "reports", ignore_errors=True)
        out = _run(
            [*pytest_cmd, "--pyargs", "terrain.properties", "--model", model, *selection, "-q"],
            cwd=project,
            env=env,
        )
        assert "terrain: " in out, out[-2000:]
        assert " findings on 1 model" in out, out[-2000:]
        assert (project / "reports" / "index.html").is_file()
        doc = json.loads((project / "reports" / "findings.json").read_text())
        assert doc["verdict"]["status"] == "pass", doc["verdict"]
        assert {f["model"] for f in doc["findings"]} == {model}
