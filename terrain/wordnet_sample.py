"""Seeded samples of WordNet noun synsets turned into the arrays the relational measures
consume: similarity matrices, hypernym chains, lexicographer files.

Similarity. Path similarity and Wu-Palmer similarity are NLTK's definitions for nouns (no
simulated root: WordNet 3.0 nouns share `entity.n.01`), computed for all pairs of a sample at
once (see `similarity_matrices`); they equal NLTK's `path_similarity` and `wup_similarity`
value for value, which the unit tests check against NLTK itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

# --- samples of noun synsets ------------------------------------------------------------

_OFFSET_LINE = re.compile(rb"^(\d{8}) ")


@dataclass(frozen=True)
class SynsetSample:
    """A seeded sample of noun synsets, in sample order."""

    synsets: tuple[Any, ...]
    seed: int
    population: int  # noun synsets in the database

    @property
    def names(self) -> list[str]:
        return [s.name() for s in self.synsets]

    @property
    def definitions(self) -> list[str]:
        return [s.definition() for s in self.synsets]

    @property
    def lexnames(self) -> list[str]:
        return [s.lexname() for s in self.synsets]

    def __len__(self) -> int:
        return len(self.synsets)


def noun_offsets(wn: Any) -> NDArray[np.int64]:
    """Byte offsets of every noun synset, read from data.noun (no synset is parsed)."""
    path = Path(wn.root.path) / "data.noun"
    offsets: list[int] = []
    with path.open("rb") as fh:
        for line in fh:
            m = _OFFSET_LINE.match(line)
            if m:
                offsets.append(int(m.group(1)))
    return np.asarray(offsets, dtype=np.int64)


def sample_noun_synsets(
    wn: Any, n: int, *, seed: int, min_definition_chars: int = 11
) -> SynsetSample:
    """`n` distinct noun synsets, uniformly at random (np.random.default_rng(seed)).

    Walks a seeded permutation of all noun synsets and keeps those whose definition has at
    least `min_definition_chars` characters (the research skipped definitions of 10 or
    fewer), so only the kept synsets are parsed.
    """
    if n < 2:
        raise ValueError(f"a sample needs at least 2 synsets, got n={n}")
    offsets = noun_offsets(wn)
    order = np.random.default_rng(seed).permutation(len(offsets))
    kept: list[Any] = []
    for i in order:
        synset = wn.synset_from_pos_and_offset("n", int(offsets[i]))
        if len(synset.definition()) >= min_definition_chars:
            kept.append(synset)
            if len(kept) == n:
                break
    if len(kept) < n:
        raise ValueError(f"only {len(kept)} noun synsets have a long enough definition, n={n}")
    return SynsetSample(tuple(kept), seed, len(offsets))


def _hypernyms(synset: Any) -> list[Any]:
    """Parents in NLTK's order: hypernyms, then instance hypernyms."""
    return list(synset.hypernyms()) + list(synset.instance_hypernyms())


def _bfs_distances(synset: Any) -> dict[Any, int]:
    """Shortest hypernym distance to every ancestor, the synset itself at 0 (as NLTK)."""
    out: dict[Any, int] = {}
    frontier = [synset]
    depth = 0
    while frontier:
        nxt = []
        for s in frontier:
            if s not in out:
                out[s] = depth
                nxt += _hypernyms(s)
        frontier = nxt
        depth += 1
    return out


def similarity_matrices(
    synsets: Sequence[Any],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(path, wup): NLTK's path and Wu-Palmer similarity of every ordered pair of nouns.

    path[i, j] = 1 / (1 + shortest path length between i and j through a common
    ancestor). wup[i, j] = 2 d / (l_i + l_j), d = 1 + max depth of the lowest common
    subsumer (the common ancestor of greatest min depth; ties: synset i itself if it is one,
    else the first by name, as NLTK), l = d + distance to it. wup is not symmetric in that
    rare tie, exactly like NLTK's `wup_similarity(i, j)`.

    All pairs at once: for each common ancestor a, its descendants in the sample form a
    block whose pair values follow from their distances to a, so the cost is the sum of the
    squared block sizes (about N^2 times the mean depth), not N^2 Python calls.
    """
    n = len(synsets)
    if n == 0:
        empty = np.zeros((0, 0), dtype=np.float64)
        return empty, empty
    up = [_bfs_distances(s) for s in synsets]
    ancestor_dists: dict[Any, dict[Any, int]] = {}

    def dists_of(a: Any) -> dict[Any, int]:
        if a not in ancestor_dists:
            ancestor_dists[a] = _bfs_distances(a)
        return ancestor_dists[a]

    # members[a] = (sample indices under a, BFS distance to a, shortest path distance to a)
    collected: dict[Any, tuple[list[int], list[int], list[int]]] = {}
    for i, dist in enumerate(up):
        for a, d in dist.items():
            # NLTK's shortest_path_distance(i, a): through any ancestor b common to both
            # (all of a's ancestors are i's too); usually just d, shorter across a DAG.
            g = min(dist[b] + db for b, db in dists_of(a).items())
            rows, ds, gs = collected.setdefault(a, ([], [], []))
            rows.append(i)
            ds.append(d)
            gs.append(g)
    # ancestor -> (sample rows under it, BFS distance to it, shortest path distance to it)
    members = {
        a: tuple(np.asarray(v, dtype=np.int64) for v in lists) for a, lists in collected.items()
    }

    path_len = np.full((n, n), np.iinfo(np.int32).max, dtype=np.int64)
    wup = np.zeros((n, n), dtype=np.float64)
    best_min_depth = np.full((n, n), -1, dtype=np.int64)
    # Lowest-priority subsumer first, so that the last write is NLTK's choice:
    # greatest min_depth, then the smallest name.
    by_name_descending = sorted(members, key=lambda a: a.name(), reverse=True)
    for a in sorted(by_name_descending, key=lambda a: a.min_depth()):  # stable sort
        rows_a, bfs, short = members[a]
        block = np.ix_(rows_a, rows_a)
        path_len[block] = np.minimum(path_len[block], bfs[:, None] + bfs[None, :])
        depth = a.max_depth() + 1
        wup[block] = (2.0 * depth) / (short[:, None] + short[None, :] + 2 * depth)
        best_min_depth[block] = a.min_depth()
    # NLTK picks synset i itself as subsumer when it is one of the tied lowest ones.
    position = {s: i for i, s in enumerate(synsets)}
    for a, (rows_a, _, short) in members.items():
        k = position.get(a)
        if k is None:
            continue
        ties = best_min_depth[k, rows_a] == a.min_depth()
        depth = a.max_depth() + 1
        wup[k, rows_a[ties]] = (2.0 * depth) / (short[ties] + 2 * depth)
    path = np.asarray(1.0 / (path_len + 1.0), dtype=np.float64)
    return path, wup


def hypernym_chains(synsets: Sequence[Any], length: int) -> Iterator[tuple[int, list[Any]]]:
    """(sample index, [h1, ..., h_length]) for each synset with `length` first-hypernym steps.

    Each step takes one hypernym (instance hypernyms count, as in NLTK's distances), as the
    research's `hypernyms()[0]` did; where there are several, the first by name, because
    NLTK returns them in an order that changes from process to process (set order under
    hash randomisation). Synsets that reach the root in fewer steps are left out, so every
    depth is measured on the same chains.
    """
    if length < 1:
        raise ValueError(f"chain length must be >= 1, got {length}")
    for i, s in enumerate(synsets):
        chain: list[Any] = []
        current = s
        while len(chain) < length:
            parents = _hypernyms(current)
            if not parents:
                break
            current = min(parents, key=lambda p: p.name())
            chain.append(current)
        if len(chain) == length:
            yield i, chain


@dataclass(frozen=True)
class RelationalSample:
    """Everything the relational properties need from WordNet, as plain arrays and texts.

    texts: the definitions to encode: the sampled synsets first (row i = sample[i]), then
    the hypernym-chain ancestors that are not in the sample. chain_roots (C,) and
    chain_rows (C, K) index those texts.
    """

    sample: SynsetSample
    path: NDArray[np.float64]  # (N, N) NLTK path similarity
    wup: NDArray[np.float64]  # (N, N) NLTK Wu-Palmer similarity (row = first argument)
    texts: tuple[str, ...]
    chain_roots: NDArray[np.int64]
    chain_rows: NDArray[np.int64]
    lexnames: tuple[str, ...]

    @property
    def similarities(self) -> dict[str, NDArray[np.float64]]:
        return {"path": self.path, "wup": self.wup}


def relational_sample(
    wn: Any, n_synsets: int, *, seed: int, n_chains: int, chain_length: int
) -> RelationalSample:
    """A seeded sample of noun synsets with its similarity matrices and hypernym chains.

    Chains start at the first `n_chains` sampled synsets that have `chain_length`
    hypernym steps (see `hypernym_chains`).
    """
    sample = sample_noun_synsets(wn, n_synsets, seed=seed)
    path, wup = similarity_matrices(sample.synsets)
    row = {s: i for i, s in enumerate(sample.synsets)}
    texts = list(sample.definitions)
    roots: list[int] = []
    rows: list[list[int]] = []
    for i, chain in hypernym_chains(sample.synsets, chain_length):
        if len(roots) == n_chains:
            break
        for a in chain:
            if a not in row:
                row[a] = len(texts)
                texts.append(a.definition())
        roots.append(i)
        rows.append([row[a] for a in chain])
    return RelationalSample(
        sample=sample,
        path=path,
        wup=wup,
        texts=tuple(texts),
        chain_roots=np.asarray(roots, dtype=np.int64),
        chain_rows=np.asarray(rows, dtype=np.int64).reshape(len(rows), chain_length),
        lexnames=tuple(sample.lexnames),
    )
