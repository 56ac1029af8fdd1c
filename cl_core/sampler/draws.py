"""Exact bulk draws of ``p_i ~ exp(-beta * key_i)`` whose cost per index does not grow with N.

Once per sampler, samples are bucketed by key into ``G`` groups narrow enough that
``beta_max * width <= 0.05`` (a stable counting sort; ``G <= 65535``). A draw picks a group from
the float64 inverse CDF of the groups' envelope masses ``count_g * exp(-beta * min_g)``, a member
uniformly, and keeps it with probability ``exp(-beta * (key_i - min_g)) >= exp(-0.05)``; rejected
draws are redrawn. This is rejection sampling with an envelope that dominates ``p`` everywhere, so
the accepted indices follow ``p`` exactly, while a refresh costs O(G) instead of O(N) and no index
arithmetic ever goes through float32 (N beyond 2^24 is fine).

Two shortcuts keep the cost per index low without changing a single draw: a draw of at least
``guide_size / GUIDE_PAYBACK`` indices (``guide_size`` ~ 4 G) builds a guide table in
O(guide_size) that turns most group searches into one lookup, while smaller draws
(``refresh_every=1``) binary-search the CDF directly; and a proposal whose exponential variate
clears ``beta`` times its group's width is kept without reading its key, so only ~5% of proposals
touch the N-sized key array.
"""

from __future__ import annotations

import math

import numpy as np

# Largest beta * (within-group difficulty spread): every proposal is kept with prob >= exp(-0.05).
_GROUP_SLACK = 0.05
_MAX_GROUPS = 65535  # group ids fit uint16, which numpy sorts stably with a linear radix sort
_MAX_GUIDE_BITS = 20  # a guide of at most 2^20 slots (8 MiB)
GUIDE_PAYBACK = 16
"""A draw builds the guide when ``size * GUIDE_PAYBACK >= guide_size``: building costs ~1 ns a
slot, while a guide lookup saves a binary search (~60 ns for thousands of groups) per proposal."""


class GroupedDraws:
    """Exact O(1) sampling of ``p_i ~ exp(-beta * key_i)`` for any ``beta >= 0``.

    Samples are grouped by key into contiguous runs of ``order``; a proposal picks group ``g`` with
    probability proportional to ``count_g * exp(-beta * (min_g - key_min))``, a member uniformly,
    and accepts it with probability ``exp(-beta * (key_i - min_g))``. Groups are narrow enough that
    the acceptance is >= exp(-0.05) for every beta up to ``max_beta``; larger betas stay exact, just
    slower.

    Parameters
    ----------
    key : ndarray of shape (N,), float32
        ``difficulty`` for the easy strategy, ``-difficulty`` for hard.
    max_beta : float
        Largest inverse temperature the caller will ask for.
    """

    def __init__(self, key: np.ndarray, max_beta: float) -> None:
        n = key.shape[0]
        self.n = n
        self.key_min = float(key.min())
        span = float(key.max()) - self.key_min
        wanted = math.ceil(max_beta * span / _GROUP_SLACK) if span > 0 else 1
        n_groups = int(min(_MAX_GROUPS, max(1, wanted)))
        index_dtype = np.int32 if n < np.iinfo(np.int32).max else np.int64
        self.order: np.ndarray | None = None  # None: identity (one group, nothing to reorder)
        if n_groups == 1:
            counts = np.array([n], dtype=np.int64)
            self.sorted_key = key
        else:
            # float64: a tiny span with a huge beta must not overflow the scale factor
            scaled = (key.astype(np.float64) - self.key_min) * (n_groups / span)
            np.minimum(scaled, n_groups - 1, out=scaled)
            group_ids = scaled.astype(np.uint16)
            del scaled
            # Stable radix sort on uint16: deterministic on every machine (ranks must agree).
            order = np.argsort(group_ids, kind="stable").astype(index_dtype)
            counts = np.bincount(group_ids, minlength=n_groups)
            counts = counts[counts > 0]
            self.order = order
            self.sorted_key = key[order]
        self.starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        self.counts = counts.astype(np.float64)
        self.group_min = np.minimum.reduceat(self.sorted_key, self.starts).astype(np.float64)
        group_max = np.maximum.reduceat(self.sorted_key, self.starts).astype(np.float64)
        # Largest ``key_i - min_g`` in each group: an exponential at least ``beta`` times this
        # accepts without reading ``key_i`` (a random access into an N-sized array).
        self.group_width = group_max - self.group_min
        self._group_offsets = self.group_min - self.key_min
        # Guide table size: a power of two (so u * size is exact), ~4 slots per group, so that at
        # most one draw in 4 (far fewer once the mass sits in a few groups) needs a search.
        guide_bits = max(4, min(_MAX_GUIDE_BITS, math.ceil(math.log2(4 * len(counts)))))
        self.guide_size = 1 << guide_bits
        self._guide_values = np.arange(len(counts) + 1, dtype=np.intp)

    @property
    def n_groups(self) -> int:
        return int(self.counts.shape[0])

    def draw(
        self,
        rng: np.random.Generator,
        beta: float,
        size: int,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """``size`` i.i.d. indices (int64) from ``p ~ exp(-beta * key)``, written into ``out``."""
        if out is None:
            out = np.empty(size, dtype=np.int64)
        if beta == 0.0 or self.n == 1:
            out[:] = rng.integers(0, self.n, size=size, dtype=np.int64)
            return out
        cdf = self.cdf(beta)
        # The guide costs O(guide_size) to build and saves a binary search per proposal, so only
        # draws large enough to repay it build one; either way a proposal finds the same group.
        guide = self.guide(cdf) if size * GUIDE_PAYBACK >= self.guide_size else None
        accept_bound = beta * self.group_width
        filled = 0
        proposals = size + size // 16 + 16  # acceptance >= exp(-0.05) ~ 0.95 when not capped
        while filled < size:
            accepted = self._propose(rng, beta, cdf, guide, accept_bound, proposals)
            take = accepted[: size - filled]
            out[filled : filled + take.shape[0]] = take if self.order is None else self.order[take]
            filled += take.shape[0]
            rate = max(accepted.shape[0] / proposals, 1e-3)
            proposals = min(int((size - filled) / rate * 1.1) + 16, 1 << 22)
        return out

    def cdf(self, beta: float) -> np.ndarray:
        """float64 CDF over groups of the envelope masses ``count_g * exp(-beta * offset_g)``."""
        cdf = np.exp(self._group_offsets * -beta)
        cdf *= self.counts
        np.cumsum(cdf, out=cdf)
        cdf /= cdf[-1]
        cdf[-1] = 1.0  # u < 1 always lands in a group
        return cdf

    def guide(self, cdf: np.ndarray) -> np.ndarray:
        """``guide[j]`` = first group with ``cdf > j / guide_size`` (= searchsorted, in O(size)).

        ``cdf[g] <= j / M`` exactly when ``ceil(cdf[g] * M) <= j`` (M is a power of two, so the
        product is exact), and those ceilings ascend with ``g``: the guide is the run-length
        expansion of group ids.
        """
        ceilings = np.ceil(cdf * self.guide_size).astype(np.intp)
        runs = np.empty(ceilings.shape[0] + 1, dtype=np.intp)
        runs[0] = ceilings[0]
        np.subtract(ceilings[1:], ceilings[:-1], out=runs[1:-1])
        runs[-1] = self.guide_size - ceilings[-1]  # 0: cdf[-1] is exactly 1
        return np.repeat(self._guide_values, runs)

    def group_of(self, u: np.ndarray, cdf: np.ndarray, guide: np.ndarray | None) -> np.ndarray:
        """The group of each uniform ``u``: ``searchsorted(cdf, u, side='right')``."""
        if guide is None:
            return np.searchsorted(cdf, u, side="right")
        group = guide[(u * self.guide_size).astype(np.intp)]
        # The guide slot gives the first candidate group; draws in a slot that holds a group
        # boundary may belong further on and take the exact search.
        stale = np.flatnonzero(cdf[group] <= u)
        if stale.size:
            group[stale] = np.searchsorted(cdf, u[stale], side="right")
        return group

    def _propose(
        self,
        rng: np.random.Generator,
        beta: float,
        cdf: np.ndarray,
        guide: np.ndarray | None,
        accept_bound: np.ndarray,
        count: int,
    ) -> np.ndarray:
        """Positions (into ``order``) of the accepted ones among ``count`` proposals."""
        group = self.group_of(rng.random(count), cdf, guide)
        member = (rng.random(count) * self.counts[group]).astype(np.int64)
        position = self.starts[group] + member
        # Accept with probability exp(-excess): P(Exp(1) >= x) = exp(-x). An exponential above
        # the group's largest excess accepts whatever the member; only the rest read its key.
        # Rounding is monotone, so beta * (key_i - min_g) <= beta * width_g in float64 too: the
        # decisions are exactly those of the plain test.
        exponential = rng.standard_exponential(count)
        keep = exponential >= accept_bound[group]
        unsure = np.flatnonzero(~keep)
        if unsure.size:
            excess = beta * (
                self.sorted_key[position[unsure]].astype(np.float64) - self.group_min[group[unsure]]
            )
            keep[unsure] = exponential[unsure] >= excess
        return position[keep]
