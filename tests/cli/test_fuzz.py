"""Fuzzing: ``probe list`` on flipped and truncated copies of the sample models (TensorFlow Lite and ONNX ones too).

Every case must end within ``CASE_TIMEOUT`` seconds with exit 0, 1 or 2 and, when
it fails, exactly one ``Error: ...`` line on stderr: no traceback, no crash, no
hang and no ``Error: unexpected ...`` (an exception probe did not translate).

The mutations are derived from seeds, so a failure is reproducible from its test
id and message. ``PROBE_FUZZ_CASES`` sets the number of cases (``make fuzz``
runs 400) and ``PROBE_FUZZ_SEED`` the first seed. The cases run in one worker
process (``_fuzz_worker.py``, TensorFlow imported once) watched by this one,
which kills it when a case exceeds its time bound and restarts it after the
case that hung or crashed it.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_models"
WORKER = Path(__file__).resolve().parent / "_fuzz_worker.py"

SAMPLE_FILES = ("cnn.h5", "cnn.keras", "multi_io.h5", "mini_rcnn_frozen.pb")
#: TensorFlow Lite flatbuffers, fuzzed in their own rotation (see ``TFLITE_MUTATIONS``).
TFLITE_FILES = ("cnn_int8.tflite", "cnn_float.tflite")
#: ONNX protobufs, in their own rotation too (see ``ONNX_MUTATIONS``).
ONNX_FILES = ("cnn.onnx",)
#: Bytes that identify each format (a protobuf has no magic: its first field tag and length; a
#: flatbuffer its root offset and the ``TFL3`` identifier).
MAGIC_LENGTH = {".h5": 8, ".keras": 4, ".pb": 2, ".tflite": 8, ".onnx": 2}
#: Where flips land and where truncations cut; each category comes up once per sample before any repeats.
FLIP_AREAS = ("header", "anywhere", "tail", "mixed")
CUT_POINTS = ("empty", "magic", "anywhere", "header", "tail")
#: HDF5 superblock and root object header, zip local header and first entry, GraphDef's first node.
HEADER_BYTES = 512
#: The end of the file: the whole zip central directory of cnn.keras.
TAIL_BYTES = 256

CASES = int(os.environ.get("PROBE_FUZZ_CASES", "32"))
BASE_SEED = int(os.environ.get("PROBE_FUZZ_SEED", "20240601"))
#: TensorFlow Lite cases: enough for every flip area and cut point of each flatbuffer (a case takes ~50 ms).
TFLITE_CASES = max(2 * len(TFLITE_FILES) * max(len(FLIP_AREAS), len(CUT_POINTS)), CASES // 2)
#: Their seeds start here, apart from the other samples'.
TFLITE_SEED_OFFSET = 1_000_000
#: ONNX cases: every flip area and cut point of each file, then more at random; their seeds start here.
ONNX_CASES = max(2 * len(ONNX_FILES) * max(len(FLIP_AREAS), len(CUT_POINTS)), CASES // 4)
ONNX_SEED_OFFSET = 2_000_000
#: The time bound of one case, in seconds.
CASE_TIMEOUT = 60.0
#: Importing TensorFlow in a fresh worker before its first case.
STARTUP_TIMEOUT = 180.0


@dataclass(frozen=True)
class Mutation:
    """One mutant of a sample: bytes XOR-ed at ``offsets``, or the file cut to ``length`` bytes.

    ``seed`` is -1 for the targeted mutations, which set zip directory fields instead of drawing offsets.
    """

    seed: int
    sample: str
    kind: str
    where: str
    offsets: tuple[int, ...] = ()
    xors: tuple[int, ...] = ()
    length: int = -1

    @property
    def case_id(self) -> str:
        """The pytest id: sample, mutation and seed."""
        if self.seed < 0:
            return f"{self.sample}-{self.kind}-{self.where}"
        return f"{self.sample}-{self.kind}-{self.where}-seed{self.seed}"

    @property
    def mutant_name(self) -> str:
        """The mutant's file name; it keeps the sample's extension."""
        path = Path(self.sample)
        return f"{path.stem}_{self.kind}_{self.where if self.seed < 0 else self.seed}{path.suffix}"

    def describe(self) -> str:
        """Everything needed to rebuild the mutant by hand."""
        if self.kind == "flip":
            flips = ", ".join(f"{offset}^0x{xor:02x}" for offset, xor in zip(self.offsets, self.xors))
            change = f"bytes XOR-ed at offset^mask: {flips}"
        else:
            change = f"truncated to {self.length} bytes"
        origin = "targeted" if self.seed < 0 else f"seed {self.seed}"
        return f"{origin}, sample_models/{self.sample}, {self.kind} ({self.where}): {change}"

    def apply(self, data: bytes) -> bytes:
        """The mutant's bytes."""
        if self.kind == "truncate":
            return data[: self.length]
        mutant = bytearray(data)
        for offset, xor in zip(self.offsets, self.xors):
            mutant[offset] ^= xor
        return bytes(mutant)


def _flip_offset(rng: random.Random, size: int, area: str) -> int:
    if area == "header":
        return rng.randrange(min(size, HEADER_BYTES))
    if area == "tail":
        return rng.randrange(max(0, size - TAIL_BYTES), size)
    return rng.randrange(size)


def make_mutation(index: int, base_seed: int = BASE_SEED, samples: tuple[str, ...] = SAMPLE_FILES) -> Mutation:
    """Case ``index``: samples take turns, flips alternate with truncations, areas cycle then repeat at random."""
    seed = base_seed + index
    rng = random.Random(seed)
    sample = samples[index % len(samples)]
    size = (SAMPLES / sample).stat().st_size
    turn = index // len(samples)
    round_of_kind = turn // 2
    if turn % 2 == 0:
        where = FLIP_AREAS[round_of_kind] if round_of_kind < len(FLIP_AREAS) else rng.choice(FLIP_AREAS)
        count = rng.randint(1, 4)
        if where == "mixed":
            areas = [("header", "anywhere", "tail")[n % 3] for n in range(count)]
        else:
            areas = [where] * count
        offsets = tuple(sorted({_flip_offset(rng, size, area) for area in areas}))
        xors = tuple(rng.randint(1, 255) for _ in offsets)
        return Mutation(seed, sample, "flip", where, offsets=offsets, xors=xors)
    where = CUT_POINTS[round_of_kind] if round_of_kind < len(CUT_POINTS) else rng.choice(CUT_POINTS)
    magic = MAGIC_LENGTH[Path(sample).suffix]
    length = {
        "empty": 0,
        "magic": magic,
        "anywhere": rng.randrange(1, size),
        "header": rng.randrange(1, min(size, HEADER_BYTES)),
        "tail": size - rng.randint(1, min(size - 1, TAIL_BYTES)),
    }[where]
    return Mutation(seed, sample, "truncate", where, length=length)


def zip_directory_mutations(sample: str = "cnn.keras") -> list[Mutation]:
    """Each central directory entry of a .keras sample with another compression method or the "encrypted" flag.

    Random flips seldom hit these two-byte fields, and each makes ``zipfile`` raise something else.
    """
    data = (SAMPLES / sample).read_bytes()
    mutations = []
    entry = data.find(b"PK\x01\x02")
    number = 0
    while entry >= 0:
        method_at = entry + 10
        (method,) = struct.unpack_from("<H", data, method_at)
        for new_method in (8, 12, 14, 99):  # deflate, bzip2, lzma, unknown
            xors = bytes(a ^ b for a, b in zip(data[method_at : method_at + 2], struct.pack("<H", new_method)))
            flips = [(method_at + n, xor) for n, xor in enumerate(xors) if xor]
            mutations.append(
                Mutation(
                    -1,
                    sample,
                    "flip",
                    f"zipdir{number}-method{new_method}",
                    offsets=tuple(offset for offset, _ in flips),
                    xors=tuple(xor for _, xor in flips),
                )
            )
        mutations.append(Mutation(-1, sample, "flip", f"zipdir{number}-encrypted", offsets=(entry + 8,), xors=(1,)))
        entry = data.find(b"PK\x01\x02", entry + 4)
        number += 1
    return mutations


#: The flatbuffers' own rotation: every flip area and cut point of each, then more at random.
TFLITE_MUTATIONS = [make_mutation(index, BASE_SEED + TFLITE_SEED_OFFSET, TFLITE_FILES) for index in range(TFLITE_CASES)]
ONNX_MUTATIONS = [make_mutation(index, BASE_SEED + ONNX_SEED_OFFSET, ONNX_FILES) for index in range(ONNX_CASES)]
MUTATIONS = (
    [make_mutation(index) for index in range(CASES)] + zip_directory_mutations() + TFLITE_MUTATIONS + ONNX_MUTATIONS
)


def _read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith("\n")]


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _run_worker(cases: list[dict[str, str]], workdir: Path, attempt: int) -> tuple[dict[str, Any], str | None, str]:
    """Runs cases in one worker until done or one hangs/crashes it: (records, stuck case id, why)."""
    cases_file = workdir / f"cases_{attempt}.json"
    events_file = workdir / f"events_{attempt}.jsonl"
    log_file = workdir / f"worker_{attempt}.log"
    cases_file.write_text(json.dumps(cases), encoding="utf-8")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    with log_file.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, str(WORKER), str(cases_file), str(events_file)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            records: dict[str, Any] = {}
            current: str | None = None
            deadline = time.monotonic() + STARTUP_TIMEOUT
            seen = 0
            while True:
                exited = worker.poll() is not None
                events = _read_events(events_file)
                for event in events[seen:]:
                    if event["event"] == "start":
                        current, deadline = event["id"], time.monotonic() + CASE_TIMEOUT
                    elif event["event"] == "done":
                        records[event["id"]] = event
                        current = None
                seen = len(events)
                if len(records) == len(cases):
                    worker.wait(timeout=CASE_TIMEOUT)
                    return records, None, ""
                if exited:
                    why = f"the worker died (exit {worker.returncode}) during it"
                    return records, current, f"{why}; its output ends with:\n{_tail(log_file)}"
                if time.monotonic() > deadline:
                    limit = f"{CASE_TIMEOUT:.0f} s" if current else f"{STARTUP_TIMEOUT:.0f} s (worker startup)"
                    return records, current, f"it did not end within {limit}; worker killed"
                time.sleep(0.05)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Writes every mutant and runs ``probe list`` on each; the record of each case by id."""
    workdir = tmp_path_factory.mktemp("fuzz")
    originals = {name: (SAMPLES / name).read_bytes() for name in SAMPLE_FILES + TFLITE_FILES + ONNX_FILES}
    cases = []
    for mutation in MUTATIONS:
        path = workdir / mutation.mutant_name
        path.write_bytes(mutation.apply(originals[mutation.sample]))
        cases.append({"id": mutation.case_id, "path": str(path)})
    results: dict[str, dict[str, Any]] = {}
    attempt = 0
    while len(results) < len(cases):
        remaining = [case for case in cases if case["id"] not in results]
        records, stuck, why = _run_worker(remaining, workdir, attempt)
        results.update(records)
        if stuck is None and len(records) < len(remaining):
            pytest.fail(f"the fuzz worker stopped between cases: {why}")
        if stuck is not None:
            results[stuck] = {"id": stuck, "failure": why}
        attempt += 1
    return results


def test_cases_cover_every_sample_and_mutation() -> None:
    """The default run already flips headers and cuts files to 0 bytes and to just after the magic."""
    default = [make_mutation(index) for index in range(24)]
    assert {m.sample for m in default} == set(SAMPLE_FILES)
    for sample in SAMPLE_FILES:
        ours = [m for m in default if m.sample == sample]
        assert {m.where for m in ours if m.kind == "flip"} >= {"header", "anywhere", "tail"}
        assert {m.length for m in ours if m.kind == "truncate"} >= {0, MAGIC_LENGTH[Path(sample).suffix]}
    assert make_mutation(5) == make_mutation(5), "mutations must be reproducible from their seed"
    assert len({m.case_id for m in MUTATIONS}) == len(MUTATIONS)
    assert len({m.mutant_name for m in MUTATIONS}) == len(MUTATIONS)
    assert len(zip_directory_mutations()) == 15, "cnn.keras should hold three zip entries"


@pytest.mark.parametrize(("files", "mutations"), [(TFLITE_FILES, TFLITE_MUTATIONS), (ONNX_FILES, ONNX_MUTATIONS)])
def test_tflite_and_onnx_cases_cover_every_flip_area_and_cut_point(
    files: tuple[str, ...], mutations: list[Mutation]
) -> None:
    """Each flatbuffer and ONNX file is flipped in its header, anywhere, at its tail, mixed, and cut at every point."""
    for sample in files:
        ours = [m for m in mutations if m.sample == sample]
        assert {m.where for m in ours if m.kind == "flip"} == set(FLIP_AREAS)
        assert {m.where for m in ours if m.kind == "truncate"} == set(CUT_POINTS)
        assert {m.length for m in ours if m.kind == "truncate"} >= {0, MAGIC_LENGTH[Path(sample).suffix]}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.case_id for m in MUTATIONS])
def test_list_survives_mutant(mutation: Mutation, fuzz_results: dict[str, dict[str, Any]]) -> None:
    """``probe list MUTANT`` ends in time with exit 0/1/2 and at most one translated ``Error:`` line."""
    record = fuzz_results[mutation.case_id]
    case = mutation.describe()
    assert "failure" not in record, f"{case}: {record.get('failure')}"
    assert record["escaped"] is None, f"{case}: an exception escaped the CLI:\n{record['escaped']}"
    assert record["seconds"] < CASE_TIMEOUT, f"{case}: took {record['seconds']:.1f} s"
    code, stderr = record["exit_code"], record["stderr"]
    assert code in (0, 1, 2), f"{case}: exit {code}\nstderr:\n{stderr}"
    assert "Traceback" not in stderr and "Traceback" not in record["stdout"], f"{case}: traceback:\n{stderr}"
    if code == 0:
        return
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), (
        f"{case}: exit {code}, stderr is not one Error: line:\n{stderr}"
    )
    assert not lines[0].startswith("Error: unexpected"), f"{case}: untranslated exception: {lines[0]}"
