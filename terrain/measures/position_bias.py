"""T5 relative position bias: per-head profiles over distance (seed notebook §3, §4, §6).

A T5 table is (buckets × heads); the score between query i and key j gets
table[bucket(j − i), h]. The bucketing (transformers' T5Attention._relative_position_bucket,
ported in `t5_bucket`): bidirectional stacks (the encoder) give half the buckets to keys
before or at the query and half to keys after it; unidirectional stacks (the decoder)
give all buckets to keys before it. Within a direction the first half of the buckets are
exact distances 0, 1, 2, ... and the rest grow logarithmically up to `max_distance`; the
bucket index within a direction therefore orders distance. Buckets no offset maps to
(in the encoder: distance 0 on the "after" side) are excluded from every statistic.

Per head, over its direction(s) in order of distance:
- monotonicity: share of steps between adjacent exact-distance buckets where the bias does
  not increase with distance (the seed's "nearby_monotonic", over its exact buckets);
- distance correlation: Pearson correlation of the bias with the bucket's rank within its
  direction (the seed correlates with the bucket index, the same order in the decoder);
- peak bucket: the argmax over the used buckets;
- kind: "local" when the peak lies at distance ≤ 2, "global" when it lies in the last 3
  buckets of its direction (the farthest, log-spaced distances), "mixed" otherwise. In the
  decoder this is the seed's rule (argmax ≤ 2 local, ≥ n_buckets − 3 global); the encoder
  applies it per direction.
Null: a head whose peak falls on a uniformly random used bucket is mixed with probability
1 − (local + global buckets)/(used buckets) (decoder, 32 buckets: 1 − 6/32 = 0.8125).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

LOCAL_DISTANCE = 2
GLOBAL_BUCKETS = 3
DEFAULT_MAX_DISTANCE = 128


def t5_bucket(
    relative_position: NDArray[np.int64],
    *,
    bidirectional: bool,
    num_buckets: int,
    max_distance: int,
) -> NDArray[np.int64]:
    """T5's bucket of each relative position (key − query), as transformers computes it."""
    rel = np.asarray(relative_position, dtype=np.int64)
    buckets = np.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        buckets += (rel > 0).astype(np.int64) * num_buckets
        n = np.abs(rel)
    else:
        n = -np.minimum(rel, 0)
    max_exact = num_buckets // 2
    small = n < max_exact
    with np.errstate(divide="ignore"):
        scaled = np.log(np.maximum(n, 1) / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (scaled * (num_buckets - max_exact)).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(small, n, large)


@dataclass(frozen=True)
class BucketLayout:
    """Where each bucket lies: direction (0: at/before the query, 1: after), rank, distance."""

    n_buckets: int
    bidirectional: bool
    used: NDArray[np.bool_]
    direction: NDArray[np.int64]
    rank: NDArray[np.int64]  # position within its direction: orders distance
    distance: NDArray[np.int64]  # smallest |key − query| mapped to the bucket (-1: unused)
    exact: NDArray[np.bool_]  # bucket holds exactly one distance

    @property
    def local(self) -> NDArray[np.bool_]:
        return self.used & (self.distance <= LOCAL_DISTANCE) & (self.distance >= 0)

    @property
    def global_(self) -> NDArray[np.bool_]:
        per_direction = self.n_buckets // 2 if self.bidirectional else self.n_buckets
        return self.used & (self.rank >= per_direction - GLOBAL_BUCKETS)

    def null_mixed_fraction(self) -> float:
        """Mixed share when the peak is a uniformly random used bucket."""
        return 1.0 - float(np.sum(self.local | self.global_)) / float(np.sum(self.used))


def bucket_layout(
    n_buckets: int, *, bidirectional: bool, max_distance: int = DEFAULT_MAX_DISTANCE
) -> BucketLayout:
    span = 4 * max(max_distance, n_buckets)  # beyond max_distance all map to the last bucket
    # Causal stacks never score keys after the query (they would share bucket 0).
    rel = np.arange(-span, (span if bidirectional else 0) + 1, dtype=np.int64)
    b = t5_bucket(
        rel, bidirectional=bidirectional, num_buckets=n_buckets, max_distance=max_distance
    )
    per_direction = n_buckets // 2 if bidirectional else n_buckets
    used = np.zeros(n_buckets, dtype=bool)
    distance = np.full(n_buckets, -1, dtype=np.int64)
    count = np.zeros(n_buckets, dtype=np.int64)
    for bucket in np.unique(b):
        dist = np.abs(rel[b == bucket])
        used[bucket] = True
        distance[bucket] = int(dist.min())
        count[bucket] = len(np.unique(dist))
    idx = np.arange(n_buckets, dtype=np.int64)
    return BucketLayout(
        n_buckets=n_buckets,
        bidirectional=bidirectional,
        used=used,
        direction=idx // per_direction,
        rank=idx % per_direction,
        distance=distance,
        exact=used & (count == 1) & (idx % per_direction < per_direction // 2),
    )


@dataclass(frozen=True)
class HeadProfile:
    head: int
    monotonic_fraction: float
    distance_correlation: float
    peak_bucket: int
    peak_distance: int  # signed: negative = key before the query, positive = after
    kind: str  # local, global, mixed
    low: float
    high: float

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PositionBiasTable:
    stack: str
    layer: int
    n_buckets: int
    n_heads: int
    bidirectional: bool
    heads: tuple[HeadProfile, ...]
    null_mixed_fraction: float  # analytic: uniformly random peak
    table: NDArray[np.float64]  # (buckets, heads), for plots

    def count(self, kind: str) -> int:
        return sum(1 for h in self.heads if h.kind == kind)

    def as_dict(self) -> dict[str, object]:
        return {
            "stack": self.stack,
            "layer": self.layer,
            "n_buckets": self.n_buckets,
            "n_heads": self.n_heads,
            "bidirectional": self.bidirectional,
            "local": self.count("local"),
            "global": self.count("global"),
            "mixed": self.count("mixed"),
            "null_mixed_fraction": self.null_mixed_fraction,
            "heads": [h.as_dict() for h in self.heads],
        }


def _pearson(x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def position_bias_profiles(
    table: torch.Tensor,
    *,
    bidirectional: bool,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    stack: str = "",
    layer: int = 0,
) -> PositionBiasTable:
    """Profiles of every head of one (buckets × heads) relative position bias table."""
    t = table.detach().to(torch.float64).cpu().numpy()
    n_buckets, n_heads = t.shape
    lay = bucket_layout(n_buckets, bidirectional=bidirectional, max_distance=max_distance)
    used = np.flatnonzero(lay.used)
    heads = []
    for h in range(n_heads):
        bias = t[:, h]
        steps: list[bool] = []
        for direction in np.unique(lay.direction[used]):
            exact = np.flatnonzero(lay.exact & (lay.direction == direction))
            steps += [bool(bias[b] <= bias[a]) for a, b in itertools.pairwise(exact)]
        peak = int(used[np.argmax(bias[used])])
        if lay.local[peak]:
            kind = "local"
        elif lay.global_[peak]:
            kind = "global"
        else:
            kind = "mixed"
        sign = 1 if lay.direction[peak] == 1 else -1
        heads.append(
            HeadProfile(
                head=h,
                monotonic_fraction=float(np.mean(steps)) if steps else float("nan"),
                distance_correlation=_pearson(lay.rank[used].astype(np.float64), bias[used]),
                peak_bucket=peak,
                peak_distance=sign * int(lay.distance[peak]),
                kind=kind,
                low=float(bias[used].min()),
                high=float(bias[used].max()),
            )
        )
    return PositionBiasTable(
        stack=stack,
        layer=layer,
        n_buckets=n_buckets,
        n_heads=n_heads,
        bidirectional=bidirectional,
        heads=tuple(heads),
        null_mixed_fraction=lay.null_mixed_fraction(),
        table=t,
    )
