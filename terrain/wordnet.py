"""WordNet 3.0 for the relational-alignment properties: find the corpus, load it, and turn a
seeded sample of noun synsets into arrays (similarity matrices, hypernym chains, lexicographer
files) that the measures consume.

Where the corpus lives. NLTK's WordNet reader wants the WordNet 3.0 database files plus a
`lexnames` file in `<dir>/corpora/wordnet`, with `<dir>` on `nltk.data.path` (NLTK refuses to
open corpus files outside its data path). `<dir>` is `$TERRAIN_WORDNET` when set, else
`.wordnet/` in the repository root; `make wordnet` (scripts/setup_wordnet.py) fills it, from
`nltk.download` when the network allows, else from the Debian packages `wordnet-base` and
`wordnet-sense-index`. When the corpus is missing, `WordNetMissingError` says so and names the fix.

Similarity. Path similarity and Wu-Palmer similarity are NLTK's definitions for nouns (no
simulated root: WordNet 3.0 nouns share `entity.n.01`), computed for all pairs of a sample at
once (see `similarity_matrices`); they equal NLTK's `path_similarity` and `wup_similarity`
value for value, which the unit tests check against NLTK itself.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from terrain.errors import TerrainError
from terrain.synthetic import default_cache_dir

__all__ = [
    "DEFAULT_DIR",
    "ENV_VAR",
    "FIX",
    "LEXNAMES",
    "REQUIRED_FILES",
    "RelationalSample",
    "SynsetSample",
    "WordNetMissingError",
    "corpus_dir",
    "data_dir",
    "hypernym_chains",
    "lexnames_text",
    "load_wordnet",
    "missing_reason",
    "parse_lexnames",
    "relational_sample",
    "sample_noun_synsets",
    "similarity_matrices",
]

ENV_VAR = "TERRAIN_WORDNET"
# In a project, the plugin points $TERRAIN_WORDNET at `.wordnet/` in the rootdir when it
# exists; otherwise the corpus lives in terrain's cache folder.
DEFAULT_DIR = default_cache_dir() / "wordnet"
FIX = "run `python -m terrain.wordnet_setup` (in terrain's repository: `make wordnet`)"

# The files NLTK's WordNetCorpusReader opens (its _FILES), all under <dir>/corpora/wordnet.
REQUIRED_FILES = (
    "cntlist.rev",
    "lexnames",
    "index.sense",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "data.adj",
    "data.adv",
    "data.noun",
    "data.verb",
    "adj.exc",
    "adv.exc",
    "noun.exc",
    "verb.exc",
)

# The 45 lexicographer files of WordNet 3.0 (lexnames(5WN)): number, name, syntactic category
# (1 noun, 2 verb, 3 adjective, 4 adverb). Fixed data of the WordNet 3.0 release; the
# database files refer to a synset's file by this number (lex_filenum).
LEXNAMES: tuple[tuple[int, str, int], ...] = (
    (0, "adj.all", 3),
    (1, "adj.pert", 3),
    (2, "adv.all", 4),
    (3, "noun.Tops", 1),
    (4, "noun.act", 1),
    (5, "noun.animal", 1),
    (6, "noun.artifact", 1),
    (7, "noun.attribute", 1),
    (8, "noun.body", 1),
    (9, "noun.cognition", 1),
    (10, "noun.communication", 1),
    (11, "noun.event", 1),
    (12, "noun.feeling", 1),
    (13, "noun.food", 1),
    (14, "noun.group", 1),
    (15, "noun.location", 1),
    (16, "noun.motive", 1),
    (17, "noun.object", 1),
    (18, "noun.person", 1),
    (19, "noun.phenomenon", 1),
    (20, "noun.plant", 1),
    (21, "noun.possession", 1),
    (22, "noun.process", 1),
    (23, "noun.quantity", 1),
    (24, "noun.relation", 1),
    (25, "noun.shape", 1),
    (26, "noun.state", 1),
    (27, "noun.substance", 1),
    (28, "noun.time", 1),
    (29, "verb.body", 2),
    (30, "verb.change", 2),
    (31, "verb.cognition", 2),
    (32, "verb.communication", 2),
    (33, "verb.competition", 2),
    (34, "verb.consumption", 2),
    (35, "verb.contact", 2),
    (36, "verb.creation", 2),
    (37, "verb.emotion", 2),
    (38, "verb.motion", 2),
    (39, "verb.perception", 2),
    (40, "verb.possession", 2),
    (41, "verb.social", 2),
    (42, "verb.stative", 2),
    (43, "verb.weather", 2),
    (44, "adj.ppl", 3),
)

_POS_OF_CATEGORY = {1: "noun", 2: "verb", 3: "adj", 4: "adv"}


class WordNetMissingError(TerrainError):
    """The WordNet corpus is not where terrain looks for it; the message names the fix."""


def lexnames_text() -> str:
    """The `lexnames` file as WordNet 3.0 ships it: 'NN<TAB>name<TAB>category', one a line."""
    return "".join(f"{n:02d}\t{name}\t{cat}\n" for n, name, cat in LEXNAMES)


def parse_lexnames(text: str) -> list[tuple[int, str, int]]:
    """Parse a lexnames file, checking what NLTK assumes (numbers 0, 1, 2, ... in order)."""
    rows: list[tuple[int, str, int]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3 or not fields[0].isdigit() or not fields[2].isdigit():
            raise ValueError(f"lexnames line {line_no}: expected 'NN name category', got {line!r}")
        number, name, category = int(fields[0]), fields[1], int(fields[2])
        if number != len(rows):
            raise ValueError(f"lexnames line {line_no}: file number {number}, expected {len(rows)}")
        pos = _POS_OF_CATEGORY.get(category)
        if pos is None or name.split(".")[0] != pos:
            raise ValueError(
                f"lexnames line {line_no}: {name!r} has category {category}, "
                "which is not its part of speech (1 noun, 2 verb, 3 adj, 4 adv)"
            )
        rows.append((number, name, category))
    return rows


def data_dir() -> tuple[Path, str]:
    """The NLTK data dir to use and where that choice came from (for messages)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), f"${ENV_VAR}"
    return DEFAULT_DIR, "the default, terrain's cache folder"


def corpus_dir(root: Path) -> Path:
    """Where NLTK expects the WordNet files under the data dir `root`."""
    return root / "corpora" / "wordnet"


def missing_reason(root: Path | None = None) -> str | None:
    """None when the corpus under `root` (default: `data_dir()`) is complete, else why not."""
    where, chosen_by = (root, "the argument") if root is not None else data_dir()
    corpus = corpus_dir(where)
    if not corpus.is_dir():
        return (
            f"WordNet corpus missing: no folder {str(corpus)!r} (data dir from {chosen_by}); "
            f"{FIX}, or point ${ENV_VAR} at a folder holding corpora/wordnet"
        )
    absent = [f for f in REQUIRED_FILES if not (corpus / f).is_file()]
    if absent:
        return f"WordNet corpus incomplete in {str(corpus)!r}: missing {', '.join(absent)}; {FIX}"
    linked = [f for f in REQUIRED_FILES if (corpus / f).is_symlink()]
    if linked:
        return (
            f"WordNet corpus in {str(corpus)!r} has symlinks ({', '.join(linked)}), which "
            f"NLTK refuses to follow; {FIX} (it copies the files)"
        )
    return None


def load_wordnet(root: Path | None = None) -> Any:
    """NLTK's WordNetCorpusReader on the corpus under `root` (default: `data_dir()`).

    Built once per process and data dir. Raises WordNetMissingError (with the fix) when the
    corpus is absent or incomplete, and when nltk itself is not installed.
    """
    why = missing_reason(root)
    where = root if root is not None else data_dir()[0]
    if why is not None:
        raise WordNetMissingError(why)
    return _reader(str(where.resolve()))


@lru_cache(maxsize=4)
def _reader(root: str) -> Any:
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError:
        raise WordNetMissingError(
            f"the WordNet properties need the nltk package (not installed); {FIX}"
        ) from None
    if root not in nltk.data.path:
        # NLTK opens corpus files only below a directory on its data path.
        nltk.data.path.insert(0, root)
    with warnings.catch_warnings():
        # No Open Multilingual WordNet here: only English definitions are used.
        warnings.filterwarnings(
            "ignore", message="The multilingual functions are not available", category=UserWarning
        )
        try:
            return WordNetCorpusReader(str(corpus_dir(Path(root))), None)
        except (OSError, ValueError, AssertionError) as e:
            raise WordNetMissingError(
                f"cannot read the WordNet corpus in {str(corpus_dir(Path(root)))!r}: {e}; {FIX}"
            ) from None


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
