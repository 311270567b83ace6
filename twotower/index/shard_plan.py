"""Which item goes into which index shard, and how many shards a memory bound needs (pure).

Membership is a hash of the item ID (splitmix64's finaliser, modulo the shard count), not of a
row number or of the catalogue's order: an item stays in its shard from one day's build to the
next as long as the count is unchanged, and a subset of the catalogue lands where the whole
would. The hash is spelled out here in numpy (not Python's ``hash``, which is salted per
process), so every process and machine agrees.

The bound is on a shard's Annoy file, which is what its builder holds in memory while it
builds and what a server maps. Annoy's file is a flat array of equal nodes (``12 + 4 * dim``
bytes for the angular metric): one per item plus each tree's split and leaf nodes. Measured
per tree: 2.6 to 3.4 nodes per ``dim + 2`` items on random or loosely clustered data (dims 8 to
64), rising to 5.0 on 250k to 1M items in 1,000 tight topics (the benchmarks' data: more,
smaller leaves). The estimate takes 6, so a built file stays under it; the build still checks
every file against the bound, since no count is a guarantee for every data set. The builder's
peak memory is about the file (Annoy grows its node array in steps) plus its mapped vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twotower.core.encode import id_key_array

from twotower.core.errors import UserError

MAX_SHARDS = 1024
TREE_NODES_PER_LEAF_BLOCK = 6.0  # above the measured 2.6-5.0 (see the module docstring)

_M64 = [np.uint64(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)]


def item_hash(item_ids: np.ndarray) -> np.ndarray:
    """splitmix64 of each item ID's key (uint64; string IDs hashed first, ``encode.id_key_array``);
    the same on every process, machine and day."""
    x = id_key_array(item_ids).astype(np.uint64) + _M64[0]
    x = (x ^ (x >> np.uint64(30))) * _M64[1]
    x = (x ^ (x >> np.uint64(27))) * _M64[2]
    return x ^ (x >> np.uint64(31))


def shard_of(item_ids: np.ndarray, shards: int) -> np.ndarray:
    """The shard (0 .. shards-1) of each item."""
    return (item_hash(item_ids) % np.uint64(shards)).astype(np.int64)


def node_bytes(dim: int) -> int:
    """Size of one Annoy angular node: n_descendants + two children (int32), then the vector."""
    return 12 + 4 * dim


def estimate_annoy_bytes(items: int, dim: int, n_trees: int) -> int:
    """An upper estimate of the Annoy file (= build memory) of ``items`` vectors."""
    if items <= 0:
        return 0
    per_tree = math.ceil(TREE_NODES_PER_LEAF_BLOCK * items / (dim + 2)) + 2  # + the root's copy
    return node_bytes(dim) * (items + n_trees * per_tree)


def items_within(bound_bytes: int, dim: int, n_trees: int, upto: int) -> int:
    """The most items (<= ``upto``) whose estimated file fits ``bound_bytes`` (0 if not one)."""
    lo, hi = 0, max(upto, 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate_annoy_bytes(mid, dim, n_trees) <= bound_bytes:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass
class ShardPlan:
    count: int
    shard: np.ndarray  # the shard of each item, in the order of the IDs planned
    items: list[int]  # items per shard
    estimated_bytes: list[int]  # estimated Annoy file per shard
    bound_bytes: int | None  # index.max_shard_mib in bytes, None = no bound


def plan_shards(item_ids: np.ndarray, dim: int, n_trees: int, shards: int = 1, max_shard_mib: float | None = None) -> ShardPlan:
    """The fewest shards (>= ``shards``) whose every estimated file fits ``max_shard_mib``.

    Hash buckets are not perfectly even, so the count derived from the total is checked on the
    actual IDs and raised (5% at a time) until the fullest shard fits.
    """
    n = len(item_ids)
    hashed = item_hash(item_ids)
    count, bound = max(shards, 1), None
    if max_shard_mib is not None:
        bound = int(max_shard_mib * 2**20)
        fit = items_within(bound, dim, n_trees, n)
        if fit == 0:
            raise UserError(
                f"index.max_shard_mib={max_shard_mib} ({bound:,} bytes) is smaller than one item's Annoy "
                f"footprint ({estimate_annoy_bytes(1, dim, n_trees):,} bytes at dim {dim}, index.n_trees="
                f"{n_trees}): raise index.max_shard_mib"
            )
        count = max(count, math.ceil(n / fit))
        while count <= MAX_SHARDS and np.bincount((hashed % np.uint64(count)).astype(np.int64), minlength=count).max(initial=0) > fit:
            count += max(1, count // 20)
        if count > MAX_SHARDS:
            raise UserError(
                f"index.max_shard_mib={max_shard_mib} needs more than {MAX_SHARDS} shards for {n:,} items "
                f"(at most {fit:,} items fit in one shard): raise index.max_shard_mib"
            )
    shard = (hashed % np.uint64(count)).astype(np.int64)
    items = np.bincount(shard, minlength=count).tolist()
    return ShardPlan(
        count=count, shard=shard, items=items,
        estimated_bytes=[estimate_annoy_bytes(m, dim, n_trees) for m in items], bound_bytes=bound,
    )  # fmt: skip
