"""Settings from PROBE_* variables and a [tool.probe] table, as a CI script uses them (issue #11).

Each test runs in a fresh project directory (``project``) holding at most the config it writes,
with no PROBE_* variable set but the ones it sets; ``probe config COMMAND --json`` shows what a
command would run with, so most tests load no model and no TensorFlow.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Samples, assert_one_line_error, invoke, ok, tensors_of

from probe_cli.cli import config


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty project directory as the current directory, no config above it, no PROBE_* variable."""
    root = tmp_path / "project"
    root.mkdir()
    assert config.find_config(tmp_path) is None, "a probe.toml or pyproject.toml above the test directory"
    for name in list(os.environ):
        if name.startswith("PROBE_") or name == "GITHUB_STEP_SUMMARY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(root)
    yield root


def pyproject(directory: Path, table: str) -> Path:
    """A pyproject.toml with a project table and ``table`` (TOML text) after it."""
    path = directory / "pyproject.toml"
    path.write_text('[project]\nname = "demo"\nversion = "1.0"\n\n' + table)
    return path


def settings(*args: str) -> dict[str, Any]:
    """``probe config ARGS --json``'s settings."""
    document: dict[str, Any] = json.loads(ok(invoke("config", *args, "--json")).stdout)
    return document["settings"]


def setting(command: str, key: str, *args: str) -> tuple[Any, str, str | None]:
    found = settings(command, *args)[key]
    return found["value"], found["source"], found["from"]


# ------------------------------------------------------------------ precedence


def test_precedence_command_line_env_config_default(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = pyproject(project, "[tool.probe]\nseed = 1\n")
    monkeypatch.setenv("PROBE_SEED", "2")
    assert setting("dump", "seed", "--seed", "3") == (3, "command line", None)
    assert setting("dump", "seed") == (2, "env", "PROBE_SEED")
    monkeypatch.delenv("PROBE_SEED")
    assert setting("dump", "seed") == (1, "config", f"{path} [tool.probe]")
    path.write_text("[tool.probe]\n")
    assert setting("dump", "seed") == (0, "default", None)


def test_per_command_table_and_variable_win_over_shared_ones(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = pyproject(project, "[tool.probe]\nseed = 1\n\n[tool.probe.dump]\nseed = 2\n")
    assert setting("dump", "seed") == (2, "config", f"{path} [tool.probe.dump]")
    monkeypatch.setenv("PROBE_SEED", "3")
    monkeypatch.setenv("PROBE_DUMP_SEED", "4")
    assert setting("dump", "seed") == (4, "env", "PROBE_DUMP_SEED")
    monkeypatch.setenv("PROBE_DUMP_SEED", "")  # empty is unset, as Click has it
    assert setting("dump", "seed") == (3, "env", "PROBE_SEED")


def test_precedence_reaches_the_command(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only ``probe config``: diff itself takes atol from the file, then the variable, then its option."""
    pyproject(project, "[tool.probe]\natol = 0.5\n")
    seen: list[float] = []

    def fake_diff(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["atol"])
        raise config.ConfigError("stop here")

    import probe_cli.cli.render  # noqa: F401 - its imports (the pipeline's diff_archives) bound before the patch

    monkeypatch.setattr("probe_cli.analysis.diff.diff_archives", fake_diff)
    assert_one_line_error(invoke("diff", "a.h5", "b.h5"), 2, "stop here")
    monkeypatch.setenv("PROBE_ATOL", "0.25")
    assert_one_line_error(invoke("diff", "a.h5", "b.h5"), 2, "stop here")
    assert_one_line_error(invoke("diff", "a.h5", "b.h5", "--atol", "0.125"), 2, "stop here")
    assert seen == [0.5, 0.25, 0.125]


def test_config_text_output(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = pyproject(
        project,
        "[tool.probe]\nmatch = ['conv.*']\n\n[tool.probe.diff]\nrtol = 0.01\nmax-error = [0.02, 'probs/.*=0.05']\n",
    )
    monkeypatch.setenv("PROBE_DIFF_JSON", "true")
    result = ok(invoke("config", "diff", "--atol", "0.5"))
    assert result.stdout.splitlines() == [
        f"probe diff settings (config file: {path} [tool.probe]):",
        "  setting    value                      source",
        f'  max-error  ["0.02", "probs/.*=0.05"]  config {path} [tool.probe.diff]',
        "  atol       0.5                        command line",
        f"  rtol       0.01                       config {path} [tool.probe.diff]",
        "  map        -                          default",
        "  all        false                      default",
        f'  match      ["conv.*"]                 config {path} [tool.probe]',
        "  html       -                          default",
        "  json       true                       env PROBE_DIFF_JSON",
        "  verbose    false                      default",
        "  debug      false                      default",
    ]
    assert result.stderr == ""


def test_config_json_document(project: Path) -> None:
    doc = json.loads(ok(invoke("config", "dump", "--json")).stdout)
    assert doc["command"] == "dump" and doc["config_file"] is None
    assert list(doc["settings"])[:5] == ["model", "custom-objects", "unsafe", "signature", "tensor"]
    assert doc["settings"]["model"] == {"value": None, "source": "default", "from": None}
    assert doc["settings"]["max-bytes"] == {"value": "16G", "source": "default", "from": None}


def test_config_without_required_arguments(project: Path) -> None:
    """diff's archives and plot's --tensor are not needed to see their settings."""
    assert setting("diff", "rtol") == (None, "default", None)  # None: the scale-aware verdict
    assert setting("plot", "tensor") == ([], "default", None)


def test_config_command_errors(project: Path) -> None:
    assert_one_line_error(invoke("config"), 2, "Missing argument 'COMMAND'", "list, dump, show, diff, plot")
    assert_one_line_error(invoke("config", "dumb"), 2, "'dumb' is not a command")
    assert_one_line_error(invoke("config", "dump", "--no-such"), 2, "No such option '--no-such'")


# ------------------------------------------------------------------ keys, values, paths


def test_keys_take_dashes_or_underscores_and_lists(project: Path) -> None:
    (project / "layers.py").write_text("")
    pyproject(
        project,
        "[tool.probe]\ncustom_objects = ['layers.py']\nmax-bytes = '2G'\n\n"
        "[tool.probe.dump]\nbatch_size = 4\ntensor = 'conv1/.*'\nlayer = ['a', 'b']\ndry_run = true\n",
    )
    got = settings("dump")
    assert got["custom-objects"]["value"] == [str(project / "layers.py")]
    assert got["max-bytes"]["value"] == "2G"
    assert got["batch-size"]["value"] == 4
    assert got["tensor"]["value"] == ["conv1/.*"]  # a lone value is a one-item list
    assert got["layer"]["value"] == ["a", "b"]
    assert got["dry-run"]["value"] is True


def test_relative_paths_are_relative_to_the_config_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "data").mkdir()
    (project / "data" / "x.npy").write_bytes(b"")
    pyproject(
        project,
        "[tool.probe]\nmodel = 'models/net.h5'\ncustom-objects = ['/abs/layers.py']\n\n"
        "[tool.probe.dump]\ninput = ['data/x.npy', 'mask=data/m.npy', 'data/*.npy']\n"
        "inputs-from = 'ref.probe.h5'\noutput = 'out/run.h5'\n\n[tool.probe.plot]\noutput = 'plots'\n",
    )
    deeper = project / "src" / "pkg"
    deeper.mkdir(parents=True)
    monkeypatch.chdir(deeper)
    got = settings("dump")
    assert got["model"]["value"] == str(project / "models" / "net.h5")
    assert got["custom-objects"]["value"] == ["/abs/layers.py"]
    assert got["input"]["value"] == [
        str(project / "data" / "x.npy"),
        f"mask={project / 'data' / 'm.npy'}",
        str(project / "data" / "*.npy"),
    ]
    assert got["inputs-from"]["value"] == str(project / "ref.probe.h5")
    assert got["output"]["value"] == str(project / "out" / "run.h5")
    assert setting("plot", "output")[0] == str(project / "plots")
    # the command line and variables stay relative to the current directory, as always
    monkeypatch.setenv("PROBE_MODEL", "here.h5")
    assert setting("dump", "model") == ("here.h5", "env", "PROBE_MODEL")
    assert setting("dump", "model", "there.h5") == ("there.h5", "command line", None)


def test_a_shared_key_applies_to_the_commands_that_have_it(project: Path) -> None:
    path = pyproject(project, "[tool.probe]\nmodel = 'net.h5'\natol = 0.5\nmatch = ['x.*']\n")
    assert setting("diff", "atol") == (0.5, "config", f"{path} [tool.probe]")
    assert setting("show", "match")[0] == ["x.*"]
    assert setting("list", "model")[0] == str(project / "net.h5")
    assert "atol" not in settings("dump")


def test_probe_toml_and_the_nearest_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pyproject(project, "[tool.probe]\nseed = 1\n")
    sub = project / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    pyproject(sub, "")  # no [tool.probe]: skipped
    assert setting("dump", "seed")[0] == 1
    (sub / "probe.toml").write_text("seed = 2\n\n[dump]\nforce = true\n")
    assert setting("dump", "seed") == (2, "config", str(sub / "probe.toml"))
    assert setting("dump", "force") == (True, "config", f"{sub / 'probe.toml'} [dump]")
    (sub / "probe.toml").write_text("[tool.probe]\nseed = 3\n")  # the pyproject.toml layout works there too
    assert setting("dump", "seed") == (3, "config", f"{sub / 'probe.toml'} [tool.probe]")


def test_variables_for_flags_and_repeatable_options(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_FORCE", "1")
    monkeypatch.setenv("PROBE_TENSOR", "conv1/.* dense/.*")
    monkeypatch.setenv("PROBE_CUSTOM_OBJECTS", os.pathsep.join(["a.py", "b.py"]))
    monkeypatch.setenv("PROBE_OUTPUT", "ignored.h5")  # dump's archive or plot's PNG: per command only
    monkeypatch.setenv("PROBE_DUMP_COMPRESSION", "gzip")
    got = settings("dump")
    assert got["force"] == {"value": True, "source": "env", "from": "PROBE_FORCE"}
    assert got["tensor"]["value"] == ["conv1/.*", "dense/.*"]
    assert got["custom-objects"]["value"] == ["a.py", "b.py"]
    assert got["output"]["source"] == "default"
    assert got["compression"] == {"value": "gzip", "source": "env", "from": "PROBE_DUMP_COMPRESSION"}
    monkeypatch.setenv("PROBE_FORCE", "0")
    monkeypatch.setenv("PROBE_DUMP_OUTPUT", "run.h5")
    got = settings("dump")
    assert got["force"]["value"] is False
    assert got["output"] == {"value": "run.h5", "source": "env", "from": "PROBE_DUMP_OUTPUT"}


# ------------------------------------------------------------------ MODEL


def test_missing_model_names_where_it_can_come_from(project: Path) -> None:
    line = assert_one_line_error(invoke("dump", "--tensor", "conv1/.*", "--input", "x.npy"), 2)
    assert line.startswith(
        "Error: Missing argument 'MODEL'. Give it on the command line, in PROBE_MODEL, or as model in "
        "[tool.probe] of pyproject.toml (see '"
    )
    assert line.endswith(" dump --help')")
    assert_one_line_error(invoke("list"), 2, "Missing argument 'MODEL'", "PROBE_MODEL")


def test_model_from_a_variable_is_used(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_MODEL", str(project / "nope.h5"))
    assert_one_line_error(invoke("list"), 2, "nope.h5", "does not exist")


# ------------------------------------------------------------------ --unsafe


@pytest.mark.parametrize(
    ("table", "label"),
    [
        ("[tool.probe]\nunsafe = true\n", "[tool.probe] unsafe"),
        ("[tool.probe.list]\nunsafe = false\n", "[tool.probe.list] unsafe"),
    ],
)
@pytest.mark.parametrize("command", [("dump", "net.h5"), ("config", "dump"), ("show", "a.h5")])
def test_unsafe_in_a_config_file_is_refused(project: Path, table: str, label: str, command: tuple[str, str]) -> None:
    path = pyproject(project, table)
    line = assert_one_line_error(invoke(*command), 2)
    assert line == (
        f"Error: {path}: {label}: refused: --unsafe lets a model file run code, so probe takes it only from "
        "the command line (pass --unsafe to the command instead)"
    )


@pytest.mark.parametrize("name", ["PROBE_UNSAFE", "PROBE_DUMP_UNSAFE", "PROBE_LIST_UNSAFE"])
@pytest.mark.parametrize("value", ["1", "0"])
def test_unsafe_in_a_variable_is_refused(project: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    line = assert_one_line_error(invoke("dump", "net.h5"), 2)
    assert line == (
        f"Error: {name} is refused: --unsafe lets a model file run code, so probe takes it only from the "
        "command line (pass --unsafe to the command instead)"
    )


def test_unsafe_on_the_command_line(project: Path) -> None:
    assert setting("dump", "unsafe", "--unsafe") == (True, "command line", None)
    assert setting("dump", "unsafe") == (False, "default", None)


# ------------------------------------------------------------------ broken config: one line


BROKEN = [
    pytest.param("[tool.probe]\nseed = 1x\n", "not valid TOML", "line 6", id="bad TOML"),
    pytest.param(
        "[tool.probe]\ntensors = ['x']\n",
        "[tool.probe] tensors: unknown key (did you mean 'tensor'?)",
        None,
        id="unknown key",
    ),
    pytest.param("[tool.probe]\nSeed = 2\n", "[tool.probe] Seed: unknown key", None, id="keys are lower case"),
    pytest.param(
        "[tool.probe]\nseed = '3'\n",
        "[tool.probe] seed (--seed of probe dump): expected an integer, got a string",
        None,
        id="string for integer",
    ),
    pytest.param(
        "[tool.probe.dump]\nforce = 'yes'\n",
        "[tool.probe.dump] force: expected true or false, got a string",
        None,
        id="string for flag",
    ),
    pytest.param(
        "[tool.probe.dump]\ntensor = [1]\n",
        "[tool.probe.dump] tensor: expected a string or an array of them",
        None,
        id="integer in list",
    ),
    pytest.param(
        "[tool.probe]\natol = -1\n",
        "[tool.probe] atol (--atol of probe diff): -1.0 is not in the range x>=0",
        None,
        id="out of range",
    ),
    pytest.param(
        "[tool.probe]\ncompression = 'zip'\n",
        "[tool.probe] compression (--compression of probe dump): 'zip' is",
        None,
        id="not a choice",
    ),
    pytest.param(
        "[tool.probe.dump]\natol = 1e-3\n",
        "[tool.probe.dump] atol: not an option of probe dump (it is one of probe diff, compare)",
        None,
        id="another command's key",
    ),
    pytest.param(
        "[tool.probe.dmp]\nseed = 1\n", "[tool.probe] dmp: unknown key (did you mean 'dump'?)", None, id="unknown table"
    ),
    pytest.param(
        "[tool.probe]\ndump = 1\n",
        "[tool.probe] dump: must be a table of probe dump's settings",
        None,
        id="command not a table",
    ),
    pytest.param(
        "[tool.probe]\noutput = 'x.h5'\n",
        "[tool.probe] output: means a different file for each command",
        "[tool.probe.dump]",
        id="shared output",
    ),
    pytest.param(
        "[tool.probe]\nmax_bytes = '1G'\nmax-bytes = '2G'\n",
        "[tool.probe] max-bytes: given twice",
        "'max_bytes'",
        id="given twice",
    ),
    pytest.param(
        "[tool]\nprobe = 3\n", "[tool.probe] must be a table, not an integer", None, id="tool.probe not a table"
    ),
]


@pytest.mark.parametrize(("table", "message", "also"), BROKEN)
def test_broken_config_is_one_line(project: Path, table: str, message: str, also: str | None) -> None:
    path = pyproject(project, table)
    for args in (("dump", "--tensor", "x", "net.h5"), ("config", "dump"), ("diff", "a.h5", "b.h5")):
        line = assert_one_line_error(invoke(*args), 2, str(path), message, *([also] if also else []))
        assert line.startswith(f"Error: {path}: ")


def test_bad_values_from_a_variable_or_the_file_say_so(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = pyproject(project, "[tool.probe]\nmodel = 'net.h5'\ntensor = ['(']\n")
    assert_one_line_error(
        invoke("dump"),
        2,
        "Invalid value for '-t' / '--tensor': '(' is not a valid regular expression",
        f"(from {path} [tool.probe])",
    )
    path.write_text("[tool.probe.dump]\nmodel = 'net.h5'\nmax-bytes = 'lots'\n")
    line = assert_one_line_error(invoke("dump"), 2, "Invalid value for --max-bytes: ", "'lots'")
    assert line.endswith(f" (from {path} [tool.probe.dump])")
    monkeypatch.setenv("PROBE_SEED", "abc")
    line = assert_one_line_error(invoke("dump", "--tensor", "x"), 2)
    assert line == "Error: Invalid value for '--seed': 'abc' is not a valid integer. (from PROBE_SEED)"


def test_help_works_with_a_broken_config(project: Path) -> None:
    pyproject(project, "[tool.probe\n")
    assert " dump [OPTIONS] [MODEL]\n" in ok(invoke("dump", "--help")).stdout
    assert_one_line_error(invoke("dump", "net.h5"), 2, "not valid TOML")


def test_no_config_and_no_variables_change_nothing(project: Path) -> None:
    pyproject(project, "")  # a project without [tool.probe]
    assert all(s["source"] == "default" for s in settings("dump").values())


# ------------------------------------------------------------------ end to end


def test_the_ci_command_line_runs_verbatim(project: Path, samples: Samples) -> None:
    """The issue's line, with the project's model named once in pyproject.toml."""
    import numpy as np

    (project / "models").mkdir()
    shutil.copy(samples.cnn_h5, project / "models" / "cnn.h5")
    pyproject(project, "[tool.probe]\nmodel = 'models/cnn.h5'\nseed = 3\n")
    np.save(project / "x.npy", np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32))
    ok(invoke("dump", "--tensor", "conv1/.*", "--input", "x.npy"))
    archive = project / "cnn.probe.h5"
    stored = tensors_of(archive)
    assert stored and all(name.startswith("conv1/") for name in stored)
    show = json.loads(ok(invoke("show", archive, "--json")).stdout)["provenance"]
    assert show["model_path"] == str(project / "models" / "cnn.h5")
    # the recorded command runs again without the config
    assert show["command"] == f"probe dump --tensor 'conv1/.*' --input x.npy --seed 3 {project / 'models' / 'cnn.h5'}"


def test_the_ci_command_line_with_variables_only(
    project: Path, samples: Samples, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_MODEL", str(samples.cnn_h5))
    monkeypatch.setenv("PROBE_DUMP_OUTPUT", "run.h5")
    result = ok(invoke("dump", "--layer", "conv1", "--json"))
    assert [t["name"] for t in json.loads(result.stdout)["tensors"]] == ["conv1/Relu:0"]
    assert list(tensors_of(project / "run.h5")) == ["conv1/Relu:0"]
