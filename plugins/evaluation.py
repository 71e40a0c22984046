"""The `evaluate` fixture: a property test names its declared property, and this runs it.

It looks the property up among the declarations (terrain/property.py), evaluates it on the
test's model with that model's expectation from the models file, records the finding and
its evidence, and turns the verdict into the test's outcome: outside the band fails,
"not applicable to this architecture" skips with the reason, and a failure the check
found beyond the band (a negative control without effect) fails after recording.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

import pytest

from terrain.checks.text import BudgetExceededError
from terrain.memory import trim_heap
from terrain.model import LoadedModel
from terrain.property import NotApplicableError, declarations
from terrain.wordnet import WordNetMissingError

from .assertions import check
from .recording import PROPERTY_KEY, Recorder

Evaluate = Callable[[str], None]
# Set (by `make test`) when a missing WordNet corpus is a failure, not a skip.
REQUIRE_WORDNET = "TERRAIN_REQUIRE_WORDNET"


@pytest.fixture
def evaluate(
    request: pytest.FixtureRequest, model: LoadedModel, record_finding: Recorder
) -> Evaluate:
    def run(name: str) -> None:
        __tracebackhide__ = True
        prop = declarations().get(name)
        request.node.stash[PROPERTY_KEY] = name  # also known when the property skips
        try:
            result = prop.evaluate(model, model.spec.expectation(name))
        except NotApplicableError as e:
            pytest.skip(f"not applicable: {e}")
        except BudgetExceededError as e:
            pytest.skip(f"over budget: {e}")
        except WordNetMissingError as e:
            if os.environ.get(REQUIRE_WORDNET, "").strip() not in ("", "0"):
                pytest.fail(
                    f"{e} (${REQUIRE_WORDNET} is set: the corpus is required)", pytrace=False
                )
            pytest.skip(str(e))
        finally:
            trim_heap()  # what this property freed is not held through the next one
        if result.finding.property != name:
            raise AssertionError(
                f"the check of {name!r} returned a finding of {result.finding.property!r}"
            )
        finding = replace(result.finding, version=prop.version)
        record_finding(finding, list(result.evidence), claim=prop.claim)
        check(finding)
        if result.problems:
            pytest.fail("\n".join(result.problems), pytrace=False)

    return run
