"""Install the WordNet 3.0 corpus where terrain (and NLTK) look for it. Idempotent.

    python -m terrain.wordnet_setup [--target DIR] [--source auto|nltk|debian] [--debian-dir DIR]

Target: DIR/corpora/wordnet, DIR defaulting to $TERRAIN_WORDNET, else terrain's cache
folder (terrain.wordnet.data_dir). In a project, `.wordnet/` in the pytest rootdir is
used when it exists (terrain's repository installs there: `make wordnet`). terrain puts
DIR on `nltk.data.path` itself; other NLTK code finds it with NLTK_DATA=DIR.

Sources, in the order `auto` tries them:
- nltk: `nltk.download("wordnet", download_dir=DIR)`, when the network allows;
- debian: the files of the Debian packages `wordnet-base` and `wordnet-sense-index`
  (`apt-get install wordnet-base wordnet-sense-index`, in /usr/share/wordnet), COPIED (NLTK
  refuses symlinks out of its data path), plus the `lexnames` file NLTK needs and Debian does
  not ship: the fixed list of WordNet 3.0's 45 lexicographer files (terrain.wordnet.LEXNAMES).

Prints what it did; exits non-zero, naming the fix, when no source works.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from terrain.wordnet import (
    ENV_VAR,
    LEXNAMES,
    REQUIRED_FILES,
    corpus_dir,
    data_dir,
    lexnames_text,
    missing_reason,
    parse_lexnames,
)

DEBIAN_DIR = Path("/usr/share/wordnet")
DEBIAN_PACKAGES = "wordnet-base wordnet-sense-index"
NETWORK_TIMEOUT_S = 15.0


def corpus_complete(root: Path) -> bool:
    """All files present and the lexnames file is WordNet 3.0's."""
    if missing_reason(root) is not None:
        return False
    try:
        rows = parse_lexnames((corpus_dir(root) / "lexnames").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return tuple(rows) == LEXNAMES


def from_nltk(root: Path) -> str | None:
    """Download with NLTK; None on success, else why not."""
    try:
        import nltk
    except ImportError:
        return "nltk is not installed"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT_S)
    try:
        ok = nltk.download("wordnet", download_dir=str(root), quiet=True, raise_on_error=False)
    except Exception as e:  # any network or archive error means: try the next source
        return f"nltk.download failed: {type(e).__name__}: {e}"
    finally:
        socket.setdefaulttimeout(previous)
    if not ok:
        return "nltk.download could not fetch 'wordnet' (no network?)"
    if not (corpus_dir(root) / "lexnames").is_file():
        return "nltk.download left no corpora/wordnet/lexnames"
    return None


def from_debian(root: Path, source: Path) -> str | None:
    """Copy the Debian files and write lexnames; None on success, else why not."""
    needed = [f for f in REQUIRED_FILES if f != "lexnames"]
    absent = [f for f in needed if not (source / f).is_file()]
    if absent:
        return (
            f"{source} lacks {', '.join(absent)} "
            f"(install: apt-get install --no-install-recommends {DEBIAN_PACKAGES})"
        )
    target = corpus_dir(root)
    target.mkdir(parents=True, exist_ok=True)
    for name in needed:
        dest = target / name
        if dest.is_symlink():
            dest.unlink()  # NLTK will not follow a link out of its data path
        if dest.is_file() and filecmp.cmp(source / name, dest, shallow=False):
            continue
        _atomic_copy(source / name, dest)
    _atomic_write(target / "lexnames", lexnames_text())
    return None


def _atomic_copy(src: Path, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    shutil.copyfile(src, tmp)  # a real copy, never a link
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; the corpus is read-only data for everyone
    os.replace(tmp, dest)


def _atomic_write(dest: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, default=None, help="NLTK data dir to fill")
    parser.add_argument("--source", choices=("auto", "nltk", "debian"), default="auto")
    parser.add_argument("--debian-dir", type=Path, default=DEBIAN_DIR)
    parser.add_argument("--force", action="store_true", help="reinstall even when complete")
    args = parser.parse_args(argv)
    root = (args.target or data_dir()[0]).expanduser().resolve()
    corpus = corpus_dir(root)
    if corpus_complete(root) and not args.force:
        print(f"WordNet corpus already complete in {corpus} (nothing to do)")
        return 0
    tried: list[str] = []
    if args.source in ("auto", "nltk"):
        why = from_nltk(root)
        if why is None and corpus_complete(root):
            print(f"WordNet 3.0 downloaded with nltk into {corpus}")
            return _done(root)
        tried.append(f"nltk: {why or 'the download is incomplete'}")
    if args.source in ("auto", "debian"):
        why = from_debian(root, args.debian_dir)
        if why is None and corpus_complete(root):
            print(
                f"WordNet 3.0 copied from {args.debian_dir} (Debian {DEBIAN_PACKAGES}) into "
                f"{corpus}, with a lexnames file of the {len(LEXNAMES)} lexicographer files"
            )
            return _done(root)
        tried.append(f"debian: {why or 'the copy is incomplete'}")
    print("could not install the WordNet corpus:", file=sys.stderr)
    for line in tried:
        print(f"  {line}", file=sys.stderr)
    print(
        f"fix: apt-get install --no-install-recommends {DEBIAN_PACKAGES}, then rerun "
        "(or `make wordnet`)",
        file=sys.stderr,
    )
    return 1


def _done(root: Path) -> int:
    default = data_dir()[0].expanduser().resolve()
    if root != default:
        print(f"terrain looks in {default}: set {ENV_VAR}={root} to use this one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
