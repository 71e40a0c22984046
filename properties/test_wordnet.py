"""WordNet relational alignment of encoded definitions (terrain/checks/wordnet.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.forward


@pytest.mark.parametrize("similarity", ["path", "wup"])
def test_definitions_align_with_wordnet_similarity(
    evaluate: PropertyCheck, similarity: str
) -> None:
    """Cosines of definitions follow WordNet's path / Wu–Palmer similarity."""
    evaluate(f"wordnet_{similarity}_spearman")


def test_cosine_rises_with_wordnet_similarity_band(evaluate: PropertyCheck) -> None:
    """The mean cosine rises from the low to the high similarity band."""
    evaluate("wordnet_band_gradient")


def test_cosine_decays_along_hypernym_chains(evaluate: PropertyCheck) -> None:
    """Cosine decays along first-hypernym chains."""
    evaluate("hypernym_decay")


def test_lexicographer_files_cluster(evaluate: PropertyCheck) -> None:
    """Definitions cluster by lexicographer file."""
    evaluate("lexname_lift")


def test_wordnet_alignment_is_stable_across_seeds(evaluate: PropertyCheck) -> None:
    """The alignment holds over seeds."""
    evaluate("wordnet_stability")
