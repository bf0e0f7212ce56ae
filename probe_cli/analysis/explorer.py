"""``compare --model-explorer DIR``: probe's errors as node data for Google's Model Explorer.

Model Explorer (pip ``ai-edge-model-explorer``) colours a model's graph from a node-data JSON file
whose results are keyed by a node's id or by one of its output tensor names. Keys here are what it
matches for the file it opens:

- a ``.tflite`` file: the output tensor's name, which is probe's ``graph_name``;
- a SavedModel (opened as ``DIR/saved_model.pb``): the id of the node whose namespace is the op's
  name inside the function, in the graph Model Explorer's own converter builds (ids are indices, so
  they are read from that converter when Model Explorer is installed);
- anything else (``.h5``, ``.keras``, a frozen ``.pb``, ONNX), or a SavedModel without Model Explorer
  installed: a graph JSON probe writes from its own index, names and op inputs, keyed by probe name.

Colours are absolute: thresholds from the relative-error budget, so red means over budget. Model
Explorer is needed only to view. The builders are pure; no TensorFlow, no Click, no printing.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe_cli.analysis.report import DARKEST, STEPS, budget_of, colour, named
from probe_cli.core.errors import FileProblem
from probe_cli.core.graph import ModelGraph
from probe_cli.core.graph_names import strip_wrappers

if TYPE_CHECKING:
    from probe_cli.analysis.diff import ArchiveDiff
    from probe_cli.backends.base import TracedModel

#: probe's model formats Model Explorer opens itself (see the module docstring); probe's names of them.
TFLITE = "tflite"
SAVED_MODEL = "saved-model"
#: Op types Model Explorer hides by default: an error found there shows on the ops it feeds.
HIDDEN_OPS = frozenset({"Const", "ReadVariableOp", "VarHandleOp", "pseudo_const"})
#: JSON has no infinity: an infinite relative error (a reference of zeros) is written as this.
LARGEST = 1e300
#: Within budget a node keeps Model Explorer's own colour: only nodes over budget are coloured.
WITHIN = "transparent"
INSTALL = "pip install ai-edge-model-explorer"


@dataclass(frozen=True)
class Overlay:
    """What was written for one of the two models."""

    role: str
    #: what ``model-explorer`` opens: the model file, or the graph JSON probe wrote
    opens: Path
    node_data: list[Path]
    #: how results are keyed: ``tensor name``, ``node id`` or ``probe name``
    keyed_by: str
    matched: int
    #: compared tensors with no node in the graph Model Explorer shows
    unmatched: list[str] = field(default_factory=list)
    graph: Path | None = None

    @property
    def command(self) -> str:
        """Opens the graph coloured by relative error (one file: Model Explorer shows the last it loads)."""
        return self.command_with(self.node_data[:1])

    def command_with(self, node_data: Sequence[Path]) -> str:
        paths = ",".join(str(p) for p in node_data)
        return f"model-explorer {shlex.quote(str(self.opens))} --node_data_paths={shlex.quote(paths)}"


@dataclass(frozen=True)
class ExplorerOutput:
    directory: Path
    readme: Path
    overlays: list[Overlay]


def thresholds(budget: float) -> list[dict[str, Any]]:
    """Model Explorer's thresholds (a node takes the first whose value its value does not exceed):
    nothing within budget, then the report's colours over it."""
    over = [{"value": bound * budget, "bgColor": c} for bound, c in STEPS if bound > 1]
    return [{"value": budget, "bgColor": WITHIN}, *over, {"value": LARGEST, "bgColor": DARKEST}]


def _finite(value: float) -> float:
    return LARGEST if math.isinf(value) else value


def node_data(
    values: Mapping[str, float], budget: float, name: str, colours: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One graph's node data (Model Explorer applies it to the graph it shows): ``values`` by node key,
    coloured by :func:`thresholds`, or by ``colours`` for the keys it has (a tensor judged by another
    budget, or by the elementwise verdict)."""
    colours = colours or {}
    results: dict[str, Any] = {}
    for key, value in values.items():
        if math.isnan(value):
            continue
        results[key] = {"value": _finite(value), **({"bgColor": colours[key]} if key in colours else {})}
    return {"name": name, "results": results, "thresholds": thresholds(budget)}


def graph_json(graph: ModelGraph, label: str) -> dict[str, Any]:
    """Model Explorer's graph JSON (its ``graph_builder`` format) of a model probe read: one node per
    tensor, id and output tensor name its probe name, grouped by scope, edges from the op inputs."""
    known = set(graph.by_name)
    nodes = []
    for t in graph.nodes:
        op_name = t.name.rpartition(":")[0] or t.name
        attrs = [{"key": "op", "value": t.op_type}, {"key": "graph_name", "value": t.graph_name}]
        if t.layer:
            attrs.append({"key": "layer", "value": t.layer})
        shape = "?" if t.shape is None else "x".join("?" if d is None else str(d) for d in t.shape)
        outputs = [
            {"key": "tensor_name", "value": t.name},
            {"key": "shape", "value": shape},
            {"key": "dtype", "value": t.dtype},
        ]
        nodes.append(
            {
                "id": t.name,
                "label": t.op_type or op_name.rpartition("/")[2],
                "namespace": op_name.rpartition("/")[0],
                "attrs": attrs,
                "incomingEdges": [
                    {"sourceNodeId": source, "sourceNodeOutputId": "0", "targetNodeInputId": str(k)}
                    for k, source in enumerate(t.op_inputs)
                    if source in known
                ],
                "outputsMetadata": [{"id": "0", "attrs": outputs}],
            }
        )
    return {"label": label, "graphs": [{"id": "probe", "nodes": nodes}]}


def op_namespace(graph_name: str) -> str:
    """The namespace Model Explorer gives a SavedModel op: its name inside the function
    (``StatefulPartitionedCall/cnn_1/conv1_1/Relu:0`` -> ``cnn_1/conv1_1/Relu``)."""
    return strip_wrappers(graph_name.rpartition(":")[0] or graph_name)


#: Run in a child process: the converter carries its own TensorFlow, which logs on stderr when loaded and
#: need not share this process with the one probe loaded. Prints namespace -> node id as JSON.
_NODE_IDS = """
import json, sys
from model_explorer.builtin_tf_mlir_adapter import BuiltinTfMlirAdapter
converted = BuiltinTfMlirAdapter().convert(sys.argv[1], {})
graphs = [g for c in converted["graphCollections"] for g in c.graphs]
nodes = max((g["nodes"] for g in graphs), key=len) if graphs else []
found = {}
for node in nodes:
    if node.get("namespace") and node.get("id") is not None:
        found.setdefault(str(node["namespace"]), str(node["id"]))
print(json.dumps(found))
"""


def saved_model_nodes(saved_model: Path, timeout: float = 300.0) -> dict[str, str] | None:
    """Namespace -> node id in the graph Model Explorer builds for ``saved_model/saved_model.pb`` (its
    default .pb converter; in its largest function, the model's); None when Model Explorer is not
    installed or cannot convert it."""
    if importlib.util.find_spec("model_explorer") is None:
        return None
    try:
        done = subprocess.run(
            [sys.executable, "-c", _NODE_IDS, str(saved_model / "saved_model.pb")],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        found = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return found if isinstance(found, dict) else None


def keys_for(graph: ModelGraph, ids: Mapping[str, str] | None = None) -> tuple[dict[str, str], str]:
    """probe name -> node-data key for the graph Model Explorer will show, and what the keys are.

    TFLite: the tensor name. SavedModel with ``ids`` (:func:`saved_model_nodes`): the node id.
    Otherwise the probe name, for the graph JSON :func:`graph_json` writes."""
    if graph.format == TFLITE:
        return {t.name: t.graph_name for t in graph.nodes}, "tensor name"
    if graph.format == SAVED_MODEL and ids is not None:
        keys = {t.name: ids[op_namespace(t.graph_name)] for t in graph.nodes if op_namespace(t.graph_name) in ids}
        return keys, "node id"
    return {t.name: t.name for t in graph.nodes}, "probe name"


@dataclass(frozen=True)
class _Results:
    values: dict[str, float]
    colours: dict[str, str]
    missing: list[str]


def _results(result: ArchiveDiff, role: str, keys: Mapping[str, str], budget: float, added: bool) -> _Results:
    """Each compared tensor's relative error (or the error it adds) by node key, the colours the graph's
    thresholds would get wrong, and the tensors with no key. Several tensors on one node (outputs of one op)
    give it the largest."""
    values: dict[str, float] = {}
    colours: dict[str, str] = {}
    missing = []
    for t in result.tensors:
        key = keys.get(t.candidate_name if role == "candidate" else t.reference_name)
        value = t.added_error if added else t.rel_error
        if key is None:
            missing.append(t.candidate_name if role == "candidate" else t.reference_name)
            continue
        if value is None or value <= values.get(key, -math.inf):
            continue
        values[key] = value
        colours.pop(key, None)
        own = budget_of(result, t)
        if not added and (own != budget or t.diverges != (value > budget)):
            colours[key] = colour(value, own, t.diverges) if t.diverges else WITHIN
    return _Results(values, colours, missing)


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise FileProblem(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


def _write_json(path: Path, document: Any) -> None:
    _write_text(path, json.dumps(document, indent=1, allow_nan=False) + "\n")


def hidden(op_type: str | None, name: str) -> str | None:
    """The op type Model Explorer hides the op as by default, if it does (a frozen ReadVariableOp is an
    Identity to probe, and keeps its name)."""
    leaf = name.rpartition(":")[0].rpartition("/")[2]
    return op_type if op_type in HIDDEN_OPS else leaf if leaf in HIDDEN_OPS else None


def write_overlay(
    directory: Path,
    role: str,
    graph: ModelGraph,
    model: Path | None,
    result: ArchiveDiff,
    ids: Mapping[str, str] | None = None,
) -> Overlay:
    """Node data (relative error, and the error each tensor adds) for one model (``model``: its file), and its
    graph JSON when Model Explorer cannot open the model itself."""
    keys, keyed_by = keys_for(graph, ids)
    budget = result.budgets.default
    written = []
    for suffix, added, title in (("", False, "relative error"), (".added", True, "added error")):
        found = _results(result, role, keys, budget, added)
        path = directory / f"{role}{suffix}.json"
        _write_json(path, node_data(found.values, budget, f"probe {title} ({role})", found.colours))
        written.append(path.resolve())
        if not added:
            matched, unmatched = len(found.values), found.missing
    graph_path = None
    if keyed_by == "probe name" or model is None:
        graph_path = directory / f"{role}.graph.json"
        _write_json(graph_path, graph_json(graph, f"{model.name if model is not None else role} (probe)"))
        opens = graph_path.resolve()
    else:
        opens = model.resolve() / "saved_model.pb" if graph.format == SAVED_MODEL else model.resolve()
    return Overlay(role, opens, written, keyed_by, matched, unmatched, graph_path)


def _readme(result: ArchiveDiff, overlays: Sequence[Overlay], candidate: ModelGraph) -> str:
    first = result.first_divergence
    lines = [
        "# probe compare in Model Explorer",
        "",
        f"Reference: `{result.reference}`  ",
        f"Candidate: `{result.candidate}`",
        "",
        f"Each compared tensor's node carries its relative error ||c - r|| / ||r|| (`ROLE.json`) and the error it"
        f" adds to its inputs' (`ROLE.added.json`). Nodes within the budget ({result.budgets.text()}) keep"
        " their colour; nodes over it are orange (up to 10x the budget), red (up to 1000x) and dark red (more).",
        "",
    ]
    if first is not None:
        rel = "-" if first.rel_error is None else f"{first.rel_error:.3g}"
        lines.append(f"First divergence: `{named(first)}` (relative error {rel}).")
        kind = hidden(first.op_type, first.candidate_name)
        if kind is not None:
            fed = ", ".join(f"`{n}`" for n in candidate.consumers.get(first.candidate_name, ())) or "the ops it feeds"
            lines.append(
                f"Model Explorer hides {kind} nodes by default: the error shows on {fed}"
                " (or unhide the op type in its settings)."
            )
        lines.append("")
    for o in overlays:
        lines += [
            f"## The {o.role}'s graph",
            "",
            f"Results keyed by {o.keyed_by}; {o.matched} compared tensors found in the graph"
            + (
                f", {len(o.unmatched)} not ({', '.join(o.unmatched[:8])}{', ...' if len(o.unmatched) > 8 else ''})"
                if o.unmatched
                else ""
            )
            + ".",
            "",
            "    " + o.command,
            "",
            "with the added error as a second overlay (Model Explorer shows the one it loads last; pick the other"
            " in its side panel):",
            "",
            "    " + o.command_with(o.node_data[::-1]),
            "",
        ]
    lines += [f"Model Explorer is needed only to view: `{INSTALL}`.", ""]
    return "\n".join(lines)


def write_explorer(
    directory: str | Path,
    result: ArchiveDiff,
    graphs: Mapping[str, tuple[ModelGraph, Path | None]],
    ids: Mapping[str, Mapping[str, str] | None] | None = None,
) -> ExplorerOutput:
    """Writes node data for both models (``graphs``: each role's graph and model file) into ``directory``
    (created), graphs where needed, and a README.md with the commands that open them. ``ids``: SavedModel
    node ids by role (:func:`saved_model_nodes`)."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileProblem(f"cannot create {str(directory)!r}: {exc.strerror or exc}") from None
    ids = ids or {}
    overlays = [
        write_overlay(directory, role, *graphs[role], result, ids.get(role)) for role in ("candidate", "reference")
    ]
    readme = directory / "README.md"
    _write_text(readme, _readme(result, overlays, graphs["candidate"][0]))
    return ExplorerOutput(directory, readme, overlays)


def explorer_for(
    directory: str | Path, result: ArchiveDiff, reference: TracedModel, candidate: TracedModel
) -> ExplorerOutput:
    """:func:`write_explorer` for two traced models, asking Model Explorer (when installed) for SavedModel node ids."""
    graphs = {
        "reference": (reference.graph(), reference.loaded.path),
        "candidate": (candidate.graph(), candidate.loaded.path),
    }
    ids = {
        role: saved_model_nodes(path)
        for role, (graph, path) in graphs.items()
        if graph.format == SAVED_MODEL and path is not None
    }
    return write_explorer(directory, result, graphs, ids)
