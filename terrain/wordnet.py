"""WordNet 3.0 for the relational-alignment properties: find the corpus and load it (the
seeded samples the measures consume are terrain/wordnet_sample.py).

Where the corpus lives. NLTK's WordNet reader wants the WordNet 3.0 database files plus a
`lexnames` file in `<dir>/corpora/wordnet`, with `<dir>` on `nltk.data.path` (NLTK refuses to
open corpus files outside its data path). `<dir>` is `$TERRAIN_WORDNET` when set, else
`.wordnet/` in the repository root; `make wordnet` (terrain/wordnet_setup.py) fills it, from
`nltk.download` when the network allows, else from the Debian packages `wordnet-base` and
`wordnet-sense-index`. When the corpus is missing, `WordNetMissingError` says so and names the fix.

"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from terrain.errors import TerrainError
from terrain.synthetic import default_cache_dir

__all__ = [
    "DEFAULT_DIR",
    "ENV_VAR",
    "FIX",
    "LEXNAMES",
    "REQUIRED_FILES",
    "WordNetMissingError",
    "corpus_dir",
    "data_dir",
    "lexnames_text",
    "load_wordnet",
    "missing_reason",
    "parse_lexnames",
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
