"""Time of the WordNet relational-alignment measure against the research's per-item loops.

    python benchmarks/wordnet.py [--definitions 1000] [--pairs 20000] [--seeds 10]
                                 [--threads T] [--loop-limit-texts 200] [--loop-limit-pairs 3000]

Both run in the same process on the real all-MiniLM-L6-v2 and its random-init null (as the
property runs), on the same seeded sample of noun-synset definitions and the same pairs:

* batched: `encode_texts` (length-sorted, padded batches, masked mean-pool; no cache, then
  again from the in-memory cache), `similarity_matrices` (all pairs of the sample at once),
  `relational_alignment` (Pearson, Spearman, bands, gradient for path and Wu-Palmer
  similarity, each with a 1000-resample bootstrap interval and the paired model - null
  difference);
* loop: one forward per definition (the research's per-item style), NLTK's
  `path_similarity` and `wup_similarity` per pair, per-pair dot products and scipy's
  pearsonr/spearmanr, point estimates only (no interval: the loop is charged less work).
  Above the --loop-limit-* sizes the loop is timed on the first items and extrapolated
  linearly; the output says so.

Then the stability run: `seed_stability` over --seeds seeds (time per seed) against one
notebook-style seed (NLTK per pair, scipy), extrapolated the same way.
Threads (torch and numpy's BLAS alike): --threads, else $OMP_NUM_THREADS, else 2 (the
target machine's cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# BLAS reads its thread count when numpy loads: set it from --threads before that, so that
# numpy's matrix products and torch use the same number of threads.
os.environ.update(
    dict.fromkeys(
        ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"),
        sys.argv[sys.argv.index("--threads") + 1]
        if "--threads" in sys.argv[:-1]
        else os.environ.get("OMP_NUM_THREADS", "2"),
    )
)
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from terrain.config import load_models
from terrain.measures.pairs import sample_pairs
from terrain.measures.relational import relational_alignment
from terrain.measures.seed_stability import seed_stability
from terrain.model import LoadedModel, load_model
from terrain.property import declarations
from terrain.sources import SourceContext
from terrain.synthetic import default_cache_dir
from terrain.text_encoding import (
    DEFAULT_MAX_LENGTH,
    RepresentationCache,
    encode_texts,
    masked_mean,
    text_stack,
)
from terrain.wordnet import load_wordnet
from terrain.wordnet_sample import sample_noun_synsets, similarity_matrices

REPO = Path(__file__).resolve().parents[1]


def load_minilm() -> LoadedModel:
    models = load_models(REPO / "models.yaml", declarations())
    ctx = SourceContext((REPO / "fixtures" / "configs",), default_cache_dir())
    return load_model(models.models["minilm"], ctx, device="cpu")


def loop_encode(module: Any, tokenizer: Any, texts: Sequence[str]) -> torch.Tensor:
    """One forward per text, mean over its tokens (no padding at all)."""
    stack = text_stack(module)
    rows = []
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(
                [text], return_tensors="pt", truncation=True, max_length=DEFAULT_MAX_LENGTH
            )
            out = stack(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            rows.append(masked_mean(out.last_hidden_state, enc["attention_mask"]))
    return torch.cat(rows)


def loop_similarities(synsets: Sequence[Any], pairs: np.ndarray) -> tuple[list[float], ...]:
    path, wup = [], []
    for i, j in pairs:
        path.append(synsets[i].path_similarity(synsets[j]))
        wup.append(synsets[i].wup_similarity(synsets[j]))
    return path, wup


def loop_statistics(vectors: Sequence[np.ndarray], sims: Sequence[list[float]], pairs: Any) -> None:
    for v in vectors:
        u = v / np.linalg.norm(v, axis=1, keepdims=True)
        cos = [float(np.dot(u[i], u[j])) for i, j in pairs]
        for s in sims:
            stats.pearsonr(cos, s)
            stats.spearmanr(cos, s)


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--definitions", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--loop-limit-texts", type=int, default=200)
    parser.add_argument("--loop-limit-pairs", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads or int(os.environ["OMP_NUM_THREADS"]))

    model = load_minilm()
    null = model.null()
    tokenizer = model.tokenizer()
    modules = {"model": model.module(), "null": null.module()}
    wn = load_wordnet()
    sample = sample_noun_synsets(wn, args.definitions, seed=0)
    texts = sample.definitions
    n = len(texts)
    print(
        f"all-MiniLM-L6-v2 and its random-init null; {n} WordNet noun definitions, "
        f"{args.pairs} pairs; torch {torch.__version__}, threads={torch.get_num_threads()}"
    )
    for m in modules.values():  # warm-up: thread pools, allocator, first-call paths
        encode_texts(m, tokenizer, texts[:8])
        loop_encode(m, tokenizer, texts[:2])

    # --- batched -----------------------------------------------------------------------
    t_enc, vecs = timed(lambda: {k: encode_texts(m, tokenizer, texts) for k, m in modules.items()})
    cache = RepresentationCache(None)
    for k, m in modules.items():
        encode_texts(m, tokenizer, texts, fingerprint=k, cache=cache)
    t_enc_warm, _ = timed(
        lambda: {
            k: encode_texts(m, tokenizer, texts, fingerprint=k, cache=cache)
            for k, m in modules.items()
        }
    )
    t_sim, (path, wup) = timed(similarity_matrices, sample.synsets)
    t_stats, cmp = timed(
        relational_alignment,
        vecs["model"],
        vecs["null"],
        {"path": path, "wup": wup},
        n_pairs=args.pairs,
        seed=0,
    )

    # --- loop --------------------------------------------------------------------------
    m_texts = min(n, args.loop_limit_texts)
    t_loop_enc, loop_vecs = timed(
        lambda: {k: loop_encode(m, tokenizer, texts[:m_texts]) for k, m in modules.items()}
    )
    t_loop_enc *= n / m_texts
    diff = float((loop_vecs["model"] - vecs["model"][:m_texts]).abs().max())
    m_pairs = min(args.pairs, args.loop_limit_pairs)
    t_loop_sim, (lp, lw) = timed(loop_similarities, sample.synsets, cmp.pairs[:m_pairs])
    t_loop_sim *= args.pairs / m_pairs
    same_sims = bool(
        np.array_equal(lp, cmp.similarities["path"][:m_pairs])
        and np.array_equal(lw, cmp.similarities["wup"][:m_pairs])
    )
    np_vecs = [v.numpy().astype(np.float64) for v in vecs.values()]
    t_loop_stats, _ = timed(loop_statistics, np_vecs, (lp, lw), cmp.pairs[:m_pairs])
    t_loop_stats *= args.pairs / m_pairs

    def row(what: str, ours: float, loop: float, note: str = "") -> None:
        print(f"  {what:<28} {ours:9.3f} s {loop:9.3f} s {loop / ours:8.1f}x  {note}")

    extrap_t = "" if m_texts == n else f"loop EXTRAPOLATED from {m_texts} texts"
    extrap_p = "" if m_pairs == args.pairs else f"loop EXTRAPOLATED from {m_pairs} pairs"
    print(f"\nalignment measure ({n} definitions x 2 models, {args.pairs} pairs)")
    print(f"  {'':<28} {'batched':>11} {'loop':>11} {'ratio':>9}")
    row("encode (no cache)", t_enc, t_loop_enc, extrap_t)
    row("WordNet path + Wu-Palmer", t_sim, t_loop_sim, extrap_p)
    row("statistics", t_stats, t_loop_stats, f"{extrap_p}; batched adds 1000-resample CIs")
    cold = t_enc + t_sim + t_stats
    loop_total = t_loop_enc + t_loop_sim + t_loop_stats
    row("total, cold", cold, loop_total)
    row("total, cached representations", t_enc_warm + t_sim + t_stats, loop_total)
    print(
        f"  checks: max |batched - loop| pooled vector {diff:.2e}; "
        f"similarities equal NLTK's on the {m_pairs} timed pairs: {same_sims}"
    )
    print(
        f"  MiniLM Spearman (path) {cmp.model.correlations['path'].spearman:.4f}, "
        f"null {cmp.null.correlations['path'].spearman:.4f}"
    )

    # --- stability ---------------------------------------------------------------------
    n_items = n // 2
    t_stab, _ = timed(
        seed_stability,
        {"model": vecs["model"], "null": vecs["null"]},
        {"path": path, "wup": wup},
        n_seeds=args.seeds,
        n_items=n_items,
        n_pairs=args.pairs,
    )
    rng = np.random.default_rng(0)
    items = rng.choice(n, size=n_items, replace=False)
    pairs = items[sample_pairs(n_items, m_pairs, rng)]
    t_seed_loop, (sp, sw) = timed(loop_similarities, sample.synsets, pairs)
    t_seed_stats, _ = timed(loop_statistics, np_vecs, (sp, sw), pairs)
    per_loop = (t_seed_loop + t_seed_stats) * args.pairs / m_pairs
    print(
        f"\nstability ({args.seeds} seeds, {n_items} synsets and {args.pairs} pairs per seed, "
        "model + null, path + Wu-Palmer)"
    )
    print(
        f"  batched: {t_stab / args.seeds:.4f} s per seed ({t_stab:.3f} s in all); "
        f"loop: {per_loop:.3f} s per seed"
        + ("" if m_pairs == args.pairs else f" (EXTRAPOLATED from {m_pairs} pairs)")
        + f"; ratio {per_loop / (t_stab / args.seeds):.0f}x"
    )


if __name__ == "__main__":
    main()
