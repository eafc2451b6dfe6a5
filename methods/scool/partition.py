"""How the devices' data is cut: classes per device, groups, label maps, disjoint equal-size shards.

Every device holds the same number of samples (one shard of equal size per class it owns), so the local
data of all devices stacks into one (n_devices, m, ...) tensor for batched training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Partition:
    classes: np.ndarray  # (n, c) the input classes each device holds
    label_map: np.ndarray  # (n, C) true label -> the label device i is trained and tested on
    group: np.ndarray  # (n,) true group: devices with the same classes and label map
    indices: np.ndarray  # (n, m) training-set indices of each device's samples


def _class_sets(n_sets: int, c: int, num_classes: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint class sets while the classes last, then random ones."""
    perm = rng.permutation(num_classes)
    sets = [np.sort(perm[i * c : (i + 1) * c]) for i in range(min(n_sets, num_classes // c))]
    while len(sets) < n_sets:
        sets.append(np.sort(rng.choice(num_classes, c, replace=False)))
    return sets


def make_partition(
    labels: np.ndarray,
    num_classes: int,
    kind: str,
    n_devices: int,
    c: int,
    groups: int,
    rng: np.random.Generator,
    samples_per_class: int | None = None,
) -> Partition:
    identity = np.arange(num_classes)
    if kind == "noniid":
        # The official scheme (util.py: split_non_iid_dataset_tiny, select_partition_rand_non_iid): each
        # label's samples are cut into `rows` shards; row r lays shard r of every label out in a random
        # order and cuts it into runs of c labels, one device each. So a device holds c distinct labels and
        # every label is held by exactly `rows` devices (CIFAR-10, 100 devices, c = 2: 20 rows, shards of
        # 250, 500 samples a device). A last row is used in part when n·c is not a multiple of C.
        if num_classes % c:
            raise ValueError(
                f"classes_per_device={c} must divide the {num_classes} classes (partition=noniid)"
            )
        rows = -(-n_devices * c // num_classes)
        order = np.concatenate([rng.permutation(num_classes) for _ in range(rows)])
        classes = np.sort(order[: n_devices * c].reshape(n_devices, c), axis=1)
        maps = np.tile(identity, (n_devices, 1))
        _, group = np.unique(classes, axis=0, return_inverse=True)
    else:
        per = n_devices // groups
        group = np.repeat(np.arange(groups), per)
        if kind == "noniid_sbm":  # paper: groups of devices with identical class pairs
            sets = _class_sets(groups, c, num_classes, rng)
            maps_g = [identity] * groups
        else:  # conflict: groups 2p and 2p+1 see the same inputs; 2p+1 shifts the labels within the set
            pair_sets = _class_sets(groups // 2, c, num_classes, rng)
            sets, maps_g = [], []
            for s in pair_sets:
                shifted = identity.copy()
                shifted[s] = np.roll(s, 1)
                sets += [s, s]
                maps_g += [identity, shifted]
        classes = np.stack([sets[g] for g in group])
        maps = np.stack([maps_g[g] for g in group])
    group = np.asarray(group).reshape(-1)

    # Disjoint shards: class k's samples split evenly among the devices that own k; one common shard size.
    users = {k: np.flatnonzero((classes == k).any(1)) for k in range(num_classes)}
    pools = {k: rng.permutation(np.flatnonzero(labels == k)) for k in users if len(users[k])}
    size = min(len(pools[k]) // len(users[k]) for k in pools)
    if samples_per_class is not None:
        size = min(size, samples_per_class)
    if size < 1:
        raise ValueError(f"too many devices ({n_devices}) for the data: a class shard would be empty")
    indices = np.zeros((n_devices, c * size), dtype=np.int64)
    for k, devs in users.items():
        for r, d in enumerate(devs):
            slot = int(np.flatnonzero(classes[d] == k)[0])
            indices[d, slot * size : (slot + 1) * size] = pools[k][r * size : (r + 1) * size]
    return Partition(classes, maps, group, indices)


def device_test_sets(labels: np.ndarray, part: Partition) -> tuple[np.ndarray, np.ndarray]:
    """(n, t) test indices of each device's own classes (padded by repetition), and a mask of real ones."""
    own = [np.flatnonzero(np.isin(labels, cls)) for cls in part.classes]
    t = max(len(o) for o in own)
    idx = np.stack([np.resize(o, t) for o in own])
    mask = np.stack([np.arange(t) < len(o) for o in own])
    return idx, mask
