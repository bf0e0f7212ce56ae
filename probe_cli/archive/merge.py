"""``probe merge``: the shards of one run (``dump --shard K/N``) as one archive.

Values are not copied: each tensor and input of the merged archive is an HDF5 virtual dataset
over the parts, in sample order, which h5py, ``h5ls`` and every probe command read as long as
the parts stay beside it (their paths are stored relative to it). ``copy=True`` writes a
self-contained archive instead. ``--stats-only`` parts merge exactly into real (small)
statistics: moments combined, histograms added. Parts of different runs, overlapping or
missing samples, and files that are no probe shards are refused before anything is written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe_cli.archive.format import INPUTS, TENSORS
from probe_cli.archive.reader import list_distributions, open_archive, read_attrs, read_graph
from probe_cli.archive.writer import ArchiveWriter, write_attrs
from probe_cli.core.distribution import Distribution
from probe_cli.core.errors import FileProblem, UsageProblem

#: Root attributes of a part that say which part it is, not what the run was.
_PART_ONLY = ("shard", "sample_start", "sample_stop", "samples", "created", "command")
#: What a fingerprint covers, checked one by one to say why two parts do not belong together.
_RUN_KEYS = (("model_sha256", "model"), ("seed", "seed"), ("probe_version", "probe version"), ("stats_only", "kind"))


class MergeError(UsageProblem):
    """The parts do not make one run."""


@dataclass(frozen=True)
class MergeResult:
    """What ``probe merge`` reports."""

    output: Path
    parts: list[Path]
    samples: int
    tensors: int
    #: whether the values are virtual datasets over the parts (else copied, or statistics)
    virtual: bool
    stats_only: bool


@dataclass(frozen=True)
class _Part:
    path: Path
    file: h5py.File
    attrs: dict[str, Any]

    @property
    def start(self) -> int:
        return int(self.attrs["sample_start"])

    @property
    def stop(self) -> int:
        return int(self.attrs["sample_stop"])

    @property
    def batches(self) -> int:
        return max(1, math.ceil(int(self.attrs.get("samples", 0)) / max(1, int(self.attrs.get("batch_size") or 1))))


def merge_archives(
    output: str | Path, parts: Sequence[str | Path], *, copy: bool = False, force: bool = False
) -> MergeResult:
    """Writes one archive from the parts of a sharded run; see the module docstring."""
    output = Path(output)
    if not parts:
        raise MergeError("no parts to merge", "name the archives written by dump --shard K/N")
    with ExitStack() as stack:
        files = [(path, stack.enter_context(open_archive(path))) for path in map(Path, parts)]
        ordered = _check([_Part(path, file, read_attrs(file)) for path, file in files])
        stats_only = bool(ordered[0].attrs.get("stats_only"))
        total = int(ordered[0].attrs["samples_total"])
        with ArchiveWriter(output, force=force) as writer:
            root = {k: v for k, v in ordered[0].attrs.items() if k not in _PART_ONLY}
            root |= {"samples": total, "sample_start": 0, "sample_stop": total}
            root["merged_from"] = [os.path.relpath(p.path.resolve(), output.resolve().parent) for p in ordered]
            root["command"] = ordered[0].attrs.get("command", "")
            writer.set_attrs(root)
            graph = read_graph(ordered[0].file)
            if graph is not None:
                writer.set_graph(graph)
            if stats_only:
                count = _merge_distributions(writer, ordered)
            else:
                base = output.resolve().parent
                count = sum(_merge_group(writer.file, ordered, group, base, copy) for group in (TENSORS, INPUTS))
    return MergeResult(output, [p.path for p in ordered], total, count, not copy and not stats_only, stats_only)


def _check(parts: list[_Part]) -> list[_Part]:
    """The parts in sample order, if they are the shards of one run that cover every sample once."""
    for part in parts:
        missing = [k for k in ("fingerprint", "sample_start", "sample_stop", "samples_total") if k not in part.attrs]
        if missing:
            raise FileProblem(
                f"{str(part.path)!r} is a probe archive but no part of a sharded run (no {missing[0]})",
                "write the parts with this probe's dump --shard K/N",
            )
    first = parts[0]
    for part in parts[1:]:
        if part.attrs["fingerprint"] != first.attrs["fingerprint"]:
            differs = next((label for key, label in _RUN_KEYS if part.attrs.get(key) != first.attrs.get(key)), None)
            why = f"a different {differs}" if differs else "a different selection of tensors or statistics"
            raise MergeError(f"{str(part.path)!r} and {str(first.path)!r} come from different runs ({why})")
        if part.attrs["samples_total"] != first.attrs["samples_total"]:
            raise MergeError(f"{str(part.path)!r} and {str(first.path)!r} split different numbers of samples")
    ordered = sorted(parts, key=lambda p: (p.start, p.stop))
    expected = 0
    for part in ordered:
        if part.start < expected:
            raise MergeError(f"{str(part.path)!r} overlaps another part (samples {part.start}-{part.stop - 1})")
        if part.start > expected:
            raise MergeError(f"samples {expected}-{part.start - 1} are in no part", "merge every shard of the run")
        expected = part.stop
    total = int(first.attrs["samples_total"])
    if expected != total:
        raise MergeError(f"samples {expected}-{total - 1} are in no part", "merge every shard of the run")
    return ordered


def _merge_distributions(writer: ArchiveWriter, parts: list[_Part]) -> int:
    merged: dict[str, tuple[dict[str, Any], Distribution]] = {}
    for part in parts:
        for stored in list_distributions(part.file):
            seen = merged.get(stored.name)
            dist = stored.distribution if seen is None else seen[1].merge(stored.distribution)
            merged[stored.name] = (seen[0] if seen else stored.attrs, dist)
    for attrs, dist in merged.values():
        writer.distribution(attrs, dist)
    return len(merged)


def _nodes(file: h5py.File, group: str) -> list[str]:
    """Paths of the stored tensors (or inputs) under ``group``: the objects with a ``layout``."""
    found: list[str] = []
    if group in file:
        file[group].visititems(lambda name, obj: found.append(f"{group}/{name}") if "layout" in obj.attrs else None)
    return found


def _members(node: h5py.Dataset | h5py.Group) -> list[h5py.Dataset]:
    if isinstance(node, h5py.Dataset):
        return [node]
    return [node[key] for key in sorted(node) if isinstance(node[key], h5py.Dataset)]


def _merge_group(file: h5py.File, parts: list[_Part], group: str, base: Path, copy: bool) -> int:
    paths = _nodes(parts[0].file, group)
    for part in parts[1:]:
        extra = sorted(set(_nodes(part.file, group)) - set(paths))
        if extra:
            raise MergeError(f"{str(part.path)!r} holds {extra[0]!r}, which {str(parts[0].path)!r} does not")
    for path in paths:
        nodes = []
        for part in parts:
            if path not in part.file:
                raise MergeError(f"{str(part.path)!r} holds no {path!r}, which {str(parts[0].path)!r} holds")
            nodes.append(part.file[path])
        attrs = dict(nodes[0].attrs)
        layout = attrs.get("layout")
        parent = file.require_group(path.rpartition("/")[0]) if "/" in path else file
        leaf = path.rpartition("/")[2]
        if layout == "batch":
            _concatenated(parent, leaf, [n for n in nodes], parts, base, copy)
            write_attrs(parent[leaf], attrs)
            continue
        target = parent.create_group(leaf, track_order=True)
        if layout == "per_iteration":
            iterations, batches, offset, step = [], [], 0, 0
            for part, node in zip(parts, nodes):
                for member in _members(node):
                    new = _single(target, f"step_{step:06d}", member, part, base, copy)
                    batch = int(member.attrs.get("batch", 0)) + offset
                    write_attrs(new, {**dict(member.attrs), "batch": batch})
                    iterations.append(int(member.attrs.get("iteration", 0)))
                    batches.append(batch)
                    step += 1
                offset += part.batches
            write_attrs(target, {k: v for k, v in attrs.items() if k not in ("count", "iterations", "batches")})
            target.attrs["count"] = step
            target.attrs["iterations"] = np.asarray(iterations, np.int64)
            target.attrs["batches"] = np.asarray(batches, np.int64)
        else:  # single or per_batch: one value per batch
            number = 0
            for part, node in zip(parts, nodes):
                for member in _members(node):
                    _single(target, f"batch_{number:05d}", member, part, base, copy)
                    number += 1
            write_attrs(target, {**attrs, "layout": "per_batch", "batches": number})
    return len(paths) if group == TENSORS else 0


def _virtual(dataset: h5py.Dataset) -> bool:
    """Whether a virtual dataset can map it: variable-length strings cannot be."""
    return h5py.check_string_dtype(dataset.dtype) is None


def _source(member: h5py.Dataset, part: _Part, base: Path) -> h5py.VirtualSource:
    relative = os.path.relpath(part.path.resolve(), base)
    return h5py.VirtualSource(relative, member.name, shape=member.shape, dtype=member.dtype)


def _single(target: h5py.Group, name: str, member: h5py.Dataset, part: _Part, base: Path, copy: bool) -> Any:
    if copy or not _virtual(member) or member.shape == ():
        return target.create_dataset(name, data=member[()])
    layout = h5py.VirtualLayout(shape=member.shape, dtype=member.dtype)
    layout[...] = _source(member, part, base)
    return target.create_virtual_dataset(name, layout)


def _concatenated(
    parent: h5py.Group, name: str, nodes: list[h5py.Dataset], parts: list[_Part], base: Path, copy: bool
) -> None:
    """The parts' datasets one after another along axis 0 (``layout="batch"``)."""
    shapes = {tuple(n.shape[1:]) for n in nodes}
    if len(shapes) != 1 or len({n.dtype for n in nodes}) != 1:
        raise MergeError(f"{nodes[0].name!r} has different shapes or dtypes in the parts")
    total = sum(n.shape[0] for n in nodes)
    shape = (total, *nodes[0].shape[1:])
    if copy or not all(_virtual(n) for n in nodes):
        out = parent.create_dataset(name, shape=shape, dtype=nodes[0].dtype)
        start = 0
        for node in nodes:
            for offset in range(0, node.shape[0], 1024):  # bounded memory
                rows = node[offset : offset + 1024]
                out[start + offset : start + offset + len(rows)] = rows
            start += node.shape[0]
        return
    layout = h5py.VirtualLayout(shape=shape, dtype=nodes[0].dtype)
    start = 0
    for node, part in zip(nodes, parts):
        layout[start : start + node.shape[0]] = _source(node, part, base)
        start += node.shape[0]
    parent.create_virtual_dataset(name, layout)
