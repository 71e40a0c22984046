"""The anatomy census of the checkpoint matches what its config predicts.

Every tensor has a role or a stated reason (the adapter refuses any other at load), and
the roles' tensor and parameter counts equal those of the same config built by
transformers on the meta device (no weights): a checkpoint missing a module the config
declares (say, a pooler), or carrying extra parameters, fails here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from terrain.anatomy.meta import census_from_config
from terrain.checks import kit

if TYPE_CHECKING:
    from terrain.model import LoadedModel


def anatomy_census(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    census = model.anatomy.census()
    census["dtypes"] = model.dtype_census()
    predicted = model.memo(
        "census_from_config",
        lambda: census_from_config(model.checkpoint.config, model.anatomy.family),
    )
    roles = sorted(set(census["by_role"]) | set(predicted["by_role"]))
    differ = {
        role: {"checkpoint": census["by_role"].get(role), "config": predicted["by_role"].get(role)}
        for role in roles
        if census["by_role"].get(role) != predicted["by_role"].get(role)
    }
    default = kit.Expected(1.0, 1.0, "the config's own module, built on the meta device")
    finding = kit.finding(
        model,
        "anatomy_census",
        value=1.0 - len(differ) / len(roles) if roles else math.nan,
        expected=kit.band(expect, default),
        null=None,  # a count of the checkpoint's own tensors: no null model applies
        n=census["tensors"],
        details={
            "census": census,
            "differences": differ,
            "predicted_parameters": predicted["parameters"],
        },
        tracked={"parameters": float(census["parameters"]), "tensors": float(census["tensors"])},
    )
    return kit.Evaluation(finding)


kit.declare(
    kit.Property(
        name="anatomy_census",
        statistic="fraction of roles whose tensor and parameter counts match the config",
        claim="every tensor has a role or a reason, and the roles' tensor and parameter counts "
        "equal those of the config's own module built on the meta device",
        source="the checkpoint's config",
        version=1,
        # Counts of the checkpoint's own tensors: any change is a different architecture.
        tolerance=kit.Tolerance(abs=0.0),
        domain=kit.FRACTION,
        gauge=kit.Gauge.NONE,
        kind="weights",
        evaluate=anatomy_census,
    )
)
