"""Unit tests of ``probe_cli.feed``: input-spec parsers and feeds from files or seeded random data (no TensorFlow)."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from probe_cli.core.errors import USAGE, FeedError, FileProblem, UsageProblem
from probe_cli.core.types import InputSpec
from probe_cli.feed import (
    DEFAULT_INT_LIMIT,
    DEFAULT_SEED,
    Feed,
    InputArg,
    build_feeds,
    conversion_warning,
    iter_batches,
    parse_input_arg,
    parse_range_arg,
    parse_shape_arg,
    random_array,
    read_array_file,
    shard_feeds,
)

IMAGE = InputSpec("image", "float32", (None, 4, 4, 1), "image:0")
TOKENS = InputSpec("tokens", "int32", (None, 6), "tokens:0", int_limit=7)
FLAG = InputSpec("flag", "bool", (None, 3), "flag:0")
TEXT = InputSpec("text", "string", (None,), "text:0")
SEQ = InputSpec("seq", "float32", (None, None, 3), "seq:0")
FIXED = InputSpec("fixed", "float32", (2, 5), "fixed:0")


def arrays(feeds: list[Feed]) -> dict[str, np.ndarray]:
    """The fed arrays by input name, materialized."""
    return {f.name: np.asarray(f.array) for f in feeds}


def save(path: Path, array: np.ndarray) -> Path:
    """``np.save`` returning the path."""
    np.save(path, array)
    return path


def feed_error(*args: object, **kwargs: object) -> UsageProblem:
    """The UsageProblem ``build_feeds`` raises."""
    with pytest.raises(UsageProblem) as info:
        build_feeds(*args, **kwargs)  # type: ignore[arg-type]
    assert info.value.exit_code == USAGE
    assert "\n" not in str(info.value)
    return info.value


# --- parse_input_arg ----------------------------------------------------------------------------


def test_input_arg_plain_path() -> None:
    assert parse_input_arg("x.npy") == InputArg(None, Path("x.npy"))


def test_input_arg_named() -> None:
    assert parse_input_arg("image=data/x.npy", ["image", "tokens"]) == InputArg("image", Path("data/x.npy"))


def test_input_arg_equals_belongs_to_path_unless_an_input_name() -> None:
    assert parse_input_arg("run=3.npy", ["image"]) == InputArg(None, Path("run=3.npy"))


def test_input_arg_without_known_names_splits_at_first_equals() -> None:
    assert parse_input_arg("a=b=c.npy") == InputArg("a", Path("b=c.npy"))


@pytest.mark.parametrize("text", ["=x.npy", "image="])
def test_input_arg_empty_side_is_a_path(text: str) -> None:
    assert parse_input_arg(text, ["image"]) == InputArg(None, Path(text))


# --- parse_shape_arg ----------------------------------------------------------------------------


def test_shape_arg() -> None:
    assert parse_shape_arg("image=1,224,224,3") == ("image", (1, 224, 224, 3))


def test_shape_arg_x_separator_and_single_dim() -> None:
    assert parse_shape_arg("image=224x224x3") == ("image", (224, 224, 3))
    assert parse_shape_arg("seq=7") == ("seq", (7,))


@pytest.mark.parametrize("text", ["image", "=1,2", "image=", ""])
def test_shape_arg_malformed_assignment(text: str) -> None:
    with pytest.raises(UsageProblem) as info:
        parse_shape_arg(text)
    assert info.value.message == f"--shape {text!r} is malformed"
    assert info.value.hint == "expected NAME=D1,D2,... e.g. image=1,224,224,3"


@pytest.mark.parametrize("text", ["image=a,b", "image=1,,2", "image=1.5,2", "image=1,2,"])
def test_shape_arg_non_integer_dims(text: str) -> None:
    with pytest.raises(UsageProblem) as info:
        parse_shape_arg(text)
    assert info.value.message == f"--shape {text!r} is malformed"
    assert info.value.hint == "dims must be integers, e.g. image=1,224,224,3"


def test_shape_arg_negative_dim() -> None:
    with pytest.raises(UsageProblem, match=r"^--shape 'image=-1,3' has a negative dimension$"):
        parse_shape_arg("image=-1,3")


def test_shape_arg_zero_dim() -> None:
    with pytest.raises(UsageProblem, match=r"--shape 'image=0,3' has a zero dimension"):
        parse_shape_arg("image=0,3")


# --- parse_range_arg ----------------------------------------------------------------------------


def test_range_arg() -> None:
    assert parse_range_arg("image=-1,1") == ("image", (-1.0, 1.0))
    assert parse_range_arg("x=1e-3,2.5") == ("x", (0.001, 2.5))


@pytest.mark.parametrize("text", ["image", "=0,1", "image="])
def test_range_arg_malformed_assignment(text: str) -> None:
    with pytest.raises(UsageProblem) as info:
        parse_range_arg(text)
    assert info.value.message == f"--value-range {text!r} is malformed"
    assert info.value.hint == "expected NAME=LO,HI e.g. image=-1,1"


@pytest.mark.parametrize("text", ["image=1", "image=1,2,3", "image=a,b", "image=1;2"])
def test_range_arg_malformed_values(text: str) -> None:
    with pytest.raises(UsageProblem) as info:
        parse_range_arg(text)
    assert info.value.message == f"--value-range {text!r} is malformed"


@pytest.mark.parametrize("text", ["image=2,1", "image=1,1", "image=nan,1", "image=0,inf", "image=-inf,0", "x=0,1e999"])
def test_range_arg_needs_finite_increasing_bounds(text: str) -> None:
    with pytest.raises(UsageProblem) as info:
        parse_range_arg(text)
    assert info.value.message == f"--value-range {text!r} needs finite LO < HI"


# --- random feeds -------------------------------------------------------------------------------


def test_random_float_shape_dtype_range_and_source() -> None:
    (feed,) = build_feeds([IMAGE])
    assert feed.name == "image" and feed.source == "random"
    assert feed.array.shape == (1, 4, 4, 1) and feed.array.dtype == np.float32
    values = np.asarray(feed.array)  # made lazily, a batch at a time
    assert values.min() >= 0.0 and values.max() < 1.0
    assert len(np.unique(values)) > 1


def test_random_samples_are_seeded_one_by_one_so_any_slice_equals_the_whole_run() -> None:
    """Batches and shards of random inputs equal the same samples of one run: sample i of input p
    is drawn from default_rng([seed, p, i]), whatever else is drawn."""
    from probe_cli.feed import Window, shard_feeds, shard_range

    (whole,) = build_feeds([IMAGE], samples=10, seed=5)
    everything = np.asarray(whole.array)
    assert everything.shape == (10, 4, 4, 1)
    np.testing.assert_array_equal(whole.array[3:7], everything[3:7])
    np.testing.assert_array_equal(everything[0], np.random.default_rng([5, 0, 0]).random((4, 4, 1)).astype(np.float32))
    ranges = [shard_range(10, (k, 3)) for k in range(3)]
    assert ranges == [(0, 3), (3, 6), (6, 10)]
    parts = [np.asarray(shard_feeds([whole], [IMAGE], *r)[0].array) for r in ranges]
    np.testing.assert_array_equal(np.concatenate(parts), everything)
    assert isinstance(shard_feeds([whole], [IMAGE], 3, 6)[0].array, Window)
    with pytest.raises(UsageProblem, match="K counts from 0 to N-1"):
        shard_range(10, (3, 3))
    with pytest.raises(UsageProblem, match="2 sample\\(s\\) cannot be split 3 ways"):
        shard_range(2, (0, 3))  # an empty shard would merge into an archive that lost its tensors


def test_random_is_reproducible_and_seeded() -> None:
    first = arrays(build_feeds([IMAGE, TOKENS], seed=42))
    again = arrays(build_feeds([IMAGE, TOKENS], seed=42))
    other = arrays(build_feeds([IMAGE, TOKENS], seed=43))
    for name in ("image", "tokens"):
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["image"], other["image"])


def test_default_seed_is_the_documented_default() -> None:
    np.testing.assert_array_equal(
        arrays(build_feeds([IMAGE]))["image"], arrays(build_feeds([IMAGE], seed=DEFAULT_SEED))["image"]
    )


def test_random_streams_are_per_input(tmp_path: Path) -> None:
    """Feeding one input from a file does not change the random data of the others."""
    both_random = arrays(build_feeds([IMAGE, TOKENS], seed=5))
    path = save(tmp_path / "image.npy", np.ones((1, 4, 4, 1), np.float32))
    one_file = arrays(build_feeds([IMAGE, TOKENS], [InputArg("image", path)], seed=5))
    np.testing.assert_array_equal(both_random["tokens"], one_file["tokens"])
    np.testing.assert_array_equal(one_file["image"], np.ones((1, 4, 4, 1), np.float32))


def test_batch_size_sets_the_batch_dimension() -> None:
    feeds = arrays(build_feeds([IMAGE, TOKENS], batch_size=3))
    assert feeds["image"].shape == (3, 4, 4, 1)
    assert feeds["tokens"].shape == (3, 6)


def test_fixed_batch_dimension_is_kept() -> None:
    assert arrays(build_feeds([FIXED]))["fixed"].shape == (2, 5)


def test_embedding_int_limit_respected() -> None:
    tokens = arrays(build_feeds([TOKENS], batch_size=200))["tokens"]
    assert tokens.dtype == np.int32
    assert tokens.min() >= 0 and tokens.max() < TOKENS.int_limit  # type: ignore[operator]
    assert set(np.unique(tokens)) == set(range(7))  # 1200 draws cover the whole range


def test_integers_without_embedding_default_limit() -> None:
    spec = InputSpec("ids", "int64", (None, 50), "ids:0")
    ids = arrays(build_feeds([spec], batch_size=10))["ids"]
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < DEFAULT_INT_LIMIT


def test_value_range_float() -> None:
    image = arrays(build_feeds([IMAGE], value_ranges={"image": (-3.0, -2.0)}, batch_size=50))["image"]
    assert image.min() >= -3.0 and image.max() < -2.0
    assert image.max() - image.min() > 0.9


def test_value_range_overrides_int_limit() -> None:
    tokens = arrays(build_feeds([TOKENS], value_ranges={"tokens": (100, 103)}, batch_size=100))["tokens"]
    assert set(np.unique(tokens)) == {100, 101, 102}


def test_value_range_int_with_fractional_bounds() -> None:
    tokens = arrays(build_feeds([TOKENS], value_ranges={"tokens": (-1.5, 1.5)}, batch_size=100))["tokens"]
    assert set(np.unique(tokens)) == {-1, 0, 1}


def test_value_range_holding_no_integer() -> None:
    error = feed_error([TOKENS], value_ranges={"tokens": (0.2, 0.8)})
    assert isinstance(error, FeedError)
    assert "'tokens'" in error.message and "no integer" in error.message


@pytest.mark.parametrize("bounds", [(-1.0, 5.0), (0.0, 300.0)])
def test_value_range_outside_integer_dtype(bounds: tuple[float, float]) -> None:
    spec = InputSpec("pixels", "uint8", (None, 4), "pixels:0")
    error = feed_error([spec], value_ranges={"pixels": bounds})
    assert "'pixels'" in error.message and "uint8" in error.message


def test_value_range_outside_float_dtype() -> None:
    spec = InputSpec("half", "float16", (None, 4), "half:0")
    error = feed_error([spec], value_ranges={"half": (0.0, 1e6)})
    assert "'half'" in error.message and "float16" in error.message


def test_huge_float_value_range_stays_finite() -> None:
    spec = InputSpec("wide", "float64", (None, 100), "wide:0")
    wide = arrays(build_feeds([spec], value_ranges={"wide": (-1e308, 1e308)}))["wide"]
    assert np.isfinite(wide).all() and wide.min() < 0 < wide.max()


class TopOfRange:
    """A generator stub whose every float64 draw is the largest below 1, which rounds to 1.0 in float32."""

    def random(self, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
        return np.full(shape, 1.0 - 2.0**-40, dtype)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("bounds", [None, (-2.0, 3.0)])
def test_random_floats_stay_below_high(dtype: str, bounds: tuple[float, float] | None) -> None:
    """Uniform in [LO, HI): rounding to a narrower float must not reach HI."""
    spec = InputSpec("x", dtype, (None, 3), "x:0")
    values = random_array(spec, (2, 3), TopOfRange(), bounds)  # type: ignore[arg-type]
    high = 1.0 if bounds is None else bounds[1]
    assert values.dtype == np.dtype(dtype)
    assert (values < high).all() and (values > high - 0.01).all()


def test_bool_input() -> None:
    flag = arrays(build_feeds([FLAG], batch_size=20))["flag"]
    assert flag.dtype == np.bool_ and flag.shape == (20, 3) and flag.any() and not flag.all()


def test_string_input_needs_a_file() -> None:
    error = feed_error([TEXT])
    assert error.message == "input 'text' takes strings; probe cannot make them up"
    assert error.hint == "pass --input text=FILE"


def test_shape_without_batch_dim() -> None:
    seq = arrays(build_feeds([SEQ], shapes={"seq": (5, 3)}, batch_size=2))["seq"]
    assert seq.shape == (2, 5, 3)


def test_shape_with_batch_dim() -> None:
    assert arrays(build_feeds([SEQ], shapes={"seq": (4, 5, 3)}))["seq"].shape == (4, 5, 3)


def test_shape_not_matching_the_input() -> None:
    error = feed_error([SEQ], shapes={"seq": (2, 5, 4)})
    assert error.message == "--shape for input 'seq' is (2, 5, 4), but the input is (?, ?, 3)"


def test_unknown_dimension_without_shape() -> None:
    error = feed_error([SEQ])
    assert error.message == "input 'seq' has unknown dimension 1 in shape (?, ?, 3)"
    assert error.hint is not None and "--shape seq=" in error.hint


@pytest.mark.parametrize("option", ["shapes", "value_ranges"])
def test_option_naming_unknown_input(option: str) -> None:
    value = (1, 4, 4, 1) if option == "shapes" else (0.0, 1.0)
    error = feed_error([IMAGE, TOKENS], **{option: {"imgae": value}})
    flag = "--shape" if option == "shapes" else "--value-range"
    assert error.message == f"{flag} names unknown input 'imgae'"
    assert error.hint == "did you mean 'image'?"


def test_batch_size_below_one() -> None:
    assert feed_error([IMAGE], batch_size=0).message == "--batch-size must be at least 1, got 0"


def test_negative_seed_is_a_usage_error() -> None:
    assert feed_error([IMAGE], seed=-1).message == "--seed must be a non-negative integer, got -1"


def test_feeds_in_model_input_order(tmp_path: Path) -> None:
    path = save(tmp_path / "t.npy", np.zeros((1, 6), np.int32))
    feeds = build_feeds([IMAGE, TOKENS, FLAG], [InputArg("tokens", path)])
    assert [f.name for f in feeds] == ["image", "tokens", "flag"]
    assert [f.source for f in feeds] == ["random", str(path), "random"]


# --- feeds from files ---------------------------------------------------------------------------


def test_npy_by_name(tmp_path: Path) -> None:
    data = np.arange(32, dtype=np.float32).reshape(2, 4, 4, 1)
    path = save(tmp_path / "img.npy", data)
    (feed,) = build_feeds([IMAGE], [InputArg("image", path)])
    assert feed.source == str(path)
    np.testing.assert_array_equal(np.asarray(feed.array), data)


def test_npy_by_position(tmp_path: Path) -> None:
    image = save(tmp_path / "a.npy", np.full((1, 4, 4, 1), 0.5, np.float32))
    tokens = save(tmp_path / "b.npy", np.full((1, 6), 3, np.int32))
    got = arrays(build_feeds([IMAGE, TOKENS], [InputArg(None, image), InputArg(None, tokens)]))
    assert (got["image"] == 0.5).all() and (got["tokens"] == 3).all()


def test_positional_file_goes_to_first_input_not_named(tmp_path: Path) -> None:
    tokens = save(tmp_path / "t.npy", np.full((1, 6), 2, np.int32))
    image = save(tmp_path / "i.npy", np.zeros((1, 4, 4, 1), np.float32))
    feeds = build_feeds([IMAGE, TOKENS], [InputArg(None, tokens), InputArg("image", image)])
    got = arrays(feeds)
    assert (got["tokens"] == 2).all() and (got["image"] == 0).all()


def test_too_many_positional_files(tmp_path: Path) -> None:
    a = save(tmp_path / "a.npy", np.zeros((1, 4, 4, 1), np.float32))
    error = feed_error([IMAGE], [InputArg(None, a), InputArg(None, a)])
    assert error.message == "2 unnamed input file(s) but only 1 input(s) left to feed (image)"
    assert error.hint == "name them with --input NAME=FILE"


def test_npz_keys_map_to_inputs(tmp_path: Path) -> None:
    path = tmp_path / "both.npz"
    np.savez(path, tokens=np.full((2, 6), 4, np.int32), image=np.ones((2, 4, 4, 1), np.float32))
    feeds = build_feeds([IMAGE, TOKENS], [InputArg(None, path)])
    got = arrays(feeds)
    assert (got["image"] == 1).all() and (got["tokens"] == 4).all()
    assert [f.source for f in feeds] == [f"{path}:image", f"{path}:tokens"]


def test_npz_partial_keys_leave_the_rest_random(tmp_path: Path) -> None:
    path = tmp_path / "one.npz"
    np.savez(path, tokens=np.full((1, 6), 4, np.int32))
    feeds = build_feeds([IMAGE, TOKENS], [InputArg(None, path)])
    assert [f.source for f in feeds] == ["random", f"{path}:tokens"]


def test_named_npz_picks_its_key(tmp_path: Path) -> None:
    path = tmp_path / "many.npz"
    np.savez(path, tokens=np.full((1, 6), 4, np.int32), other=np.zeros(3))
    got = arrays(build_feeds([IMAGE, TOKENS], [InputArg("tokens", path)]))
    assert (got["tokens"] == 4).all()


def test_named_npz_with_a_single_array(tmp_path: Path) -> None:
    path = tmp_path / "single.npz"
    np.savez(path, arr_0=np.full((1, 6), 5, np.int32))
    assert (arrays(build_feeds([TOKENS], [InputArg("tokens", path)]))["tokens"] == 5).all()


def test_npz_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "many.npz"
    np.savez(path, a=np.zeros(3), b=np.zeros(3))
    error = feed_error([IMAGE], [InputArg("image", path)])
    assert error.message == f"{path} has no array 'image'"
    assert error.hint == "keys: a, b"


def test_npz_key_that_is_no_input(tmp_path: Path) -> None:
    path = tmp_path / "typo.npz"
    np.savez(path, imgae=np.zeros((1, 4, 4, 1), np.float32))
    error = feed_error([IMAGE, TOKENS], [InputArg(None, path)])
    assert error.message == f"{path} holds array 'imgae', which is no input of the model"
    assert error.hint == "did you mean 'image'?"


def test_input_given_twice(tmp_path: Path) -> None:
    a = save(tmp_path / "a.npy", np.zeros((1, 4, 4, 1), np.float32))
    b = save(tmp_path / "b.npy", np.zeros((1, 4, 4, 1), np.float32))
    error = feed_error([IMAGE], [InputArg("image", a), InputArg("image", b)])
    assert error.message == f"input 'image' is given twice ({a} and {b})"


# --- dtypes: numpy's safe casts silently, value-changing same-kind casts reported, others refused ---------


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float16", "bool"])
def test_safe_casts_are_silent(tmp_path: Path, dtype: str) -> None:
    """A uint8 image fed to a float32 input was refused, although the cast loses nothing."""
    data = (np.arange(16) % 2 if dtype == "bool" else np.arange(16)).astype(dtype).reshape(1, 4, 4, 1)
    path = save(tmp_path / "x.npy", data)
    (feed,) = build_feeds([IMAGE], [InputArg("image", path)])
    assert feed.converted_from is None and conversion_warning(feed) is None
    assert np.asarray(feed.array).dtype == np.float32
    np.testing.assert_array_equal(np.asarray(feed.array), data.astype(np.float64))


def test_float64_file_is_cast_to_float32_with_a_warning(tmp_path: Path) -> None:
    data = np.linspace(0, 1, 16).reshape(1, 4, 4, 1)
    path = save(tmp_path / "f64.npy", data)
    (feed,) = build_feeds([IMAGE], [InputArg("image", path)])
    assert feed.converted_from == "float64"
    assert (
        conversion_warning(feed) == f"input 'image' from {path}: float64 converted to float32, which can change values"
    )
    np.testing.assert_array_equal(np.asarray(feed.array), data.astype(np.float32))


def test_int64_file_fits_int32_input_with_a_warning(tmp_path: Path) -> None:
    path = save(tmp_path / "ids.npy", np.arange(6, dtype=np.int64).reshape(1, 6))
    (feed,) = build_feeds([TOKENS], [InputArg("tokens", path)])
    assert np.asarray(feed.array).dtype == np.int32 and np.asarray(feed.array).tolist() == [[0, 1, 2, 3, 4, 5]]
    assert conversion_warning(feed) == f"input 'tokens' from {path}: int64 converted to int32, which can change values"


def test_a_batch_and_a_shard_keep_the_conversion(tmp_path: Path) -> None:
    path = save(tmp_path / "f64.npy", np.zeros((4, 4, 4, 1)))
    feeds = shard_feeds(build_feeds([IMAGE], [InputArg("image", path)]), [IMAGE], 0, 2)
    (batch,) = list(iter_batches(feeds, [IMAGE], 2))
    assert [f.converted_from for f in [*feeds, *batch]] == ["float64", "float64"]


def test_int64_values_too_large_for_int32(tmp_path: Path) -> None:
    path = save(tmp_path / "ids.npy", np.full((1, 6), 2**40, np.int64))
    error = feed_error([TOKENS], [InputArg("tokens", path)])
    assert error.message == f"input 'tokens' from {path}: values do not fit int32"


def test_dtype_mismatch_names_input_expected_and_given(tmp_path: Path) -> None:
    path = save(tmp_path / "c.npy", np.zeros((1, 4, 4, 1), np.complex64))
    error = feed_error([IMAGE], [InputArg("image", path)])
    assert error.message == f"input 'image' from {path}: dtype complex64 cannot feed float32"
    assert error.hint == "convert the file, e.g. np.save(path, arr.astype('float32'))"


def test_float_file_for_int_input_is_refused(tmp_path: Path) -> None:
    path = save(tmp_path / "f.npy", np.zeros((1, 6), np.float32))
    error = feed_error([TOKENS], [InputArg("tokens", path)])
    assert error.message == f"input 'tokens' from {path}: expected dtype int32, got float32"


def test_in_memory_arrays_follow_the_same_rule_in_python_words() -> None:
    """The Python API's errors name its argument and give advice for an array, not a file."""
    (feed,) = build_feeds([IMAGE], in_memory={"image": np.zeros((1, 4, 4, 1))})
    assert (
        conversion_warning(feed)
        == "input 'image' given in inputs=: float64 converted to float32, which can change values"
    )
    error = feed_error([TOKENS], in_memory={"tokens": np.zeros((1, 6), np.float32)})
    assert error.message == "input 'tokens' given in inputs=: expected dtype int32, got float32"
    assert error.hint == "convert it, e.g. arr.astype('int32')"
    assert "np.save" not in str(feed_error([IMAGE], in_memory={"image": np.zeros((1, 4, 4))}))


def test_inputs_from_an_archive_follow_the_same_rule(tmp_path: Path) -> None:
    from probe_cli.archive.writer import write_archive

    data = np.linspace(0, 1, 16).reshape(1, 4, 4, 1)
    attrs = {"probe_version": "0"}
    archive = write_archive(tmp_path / "a.h5", [], [Feed("image", data, "x.npy")], attrs, seed=0)
    (feed,) = build_feeds([IMAGE], [InputArg(None, archive)])
    assert (feed.converted_from, feed.source) == ("float64", f"{archive}:image")
    np.testing.assert_array_equal(np.asarray(feed.array), data.astype(np.float32))
    floats = write_archive(tmp_path / "t.h5", [], [Feed("tokens", np.zeros((1, 6)), "t")], attrs, seed=0)
    error = feed_error([TOKENS], [InputArg(None, floats)])
    assert error.message.endswith("expected dtype int32, got float64")


def test_shape_mismatch_names_input_expected_and_given(tmp_path: Path) -> None:
    path = save(tmp_path / "wrong.npy", np.zeros((2, 4, 4), np.float32))
    error = feed_error([IMAGE], [InputArg("image", path)])
    assert error.message == f"input 'image' from {path}: expected shape (?, 4, 4, 1), got (2, 4, 4)"


def test_inner_dimension_mismatch(tmp_path: Path) -> None:
    path = save(tmp_path / "wrong.npy", np.zeros((1, 5), np.int32))
    error = feed_error([TOKENS], [InputArg("tokens", path)])
    assert error.message == f"input 'tokens' from {path}: expected shape (?, 6), got (1, 5)"


def test_zero_length_array(tmp_path: Path) -> None:
    path = save(tmp_path / "empty.npy", np.zeros((0, 6), np.int32))
    error = feed_error([TOKENS], [InputArg("tokens", path)])
    assert error.message == f"input 'tokens' from {path}: the array is empty (shape (0, 6))"


def test_structured_dtype_refused(tmp_path: Path) -> None:
    path = save(tmp_path / "rec.npy", np.zeros((1, 6), dtype=[("a", "<i4")]))
    error = feed_error([TOKENS], [InputArg("tokens", path)])
    assert isinstance(error, FeedError) and "input 'tokens'" in error.message and "int32" in error.message


def test_string_file_for_string_input(tmp_path: Path) -> None:
    path = save(tmp_path / "s.npy", np.array(["a", "bc"]))
    (feed,) = build_feeds([TEXT], [InputArg("text", path)])
    assert np.asarray(feed.array).tolist() == ["a", "bc"]


# --- unreadable and hostile files ---------------------------------------------------------------


def read_problem(path: Path) -> FileProblem:
    """The FileProblem reading ``path`` raises, checked to be one line naming the file."""
    with pytest.raises(FileProblem) as info:
        read_array_file(path)
    assert info.value.exit_code == USAGE
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    return info.value


def test_object_npy_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    error = read_problem(path)
    assert error.message == f"input file {str(path)!r} holds Python objects"
    assert error.hint == "probe never unpickles inputs; save a numeric array instead"


def test_object_array_in_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, image=np.array([{"a": 1}], dtype=object))
    error = read_problem(path)
    assert "Python objects" in str(error) or "Object arrays" in str(error)


class Boom:
    """Unpickling this would run code; probe must never do it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("PWNED",))


def test_raw_pickle_named_npy_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.npy"
    path.write_bytes(pickle.dumps(Boom()))
    error = read_problem(path)
    assert error.message == f"input file {str(path)!r} holds Python objects"
    assert "PWNED" not in capsys.readouterr().out


def test_text_file_named_npy_is_not_called_pickled(tmp_path: Path) -> None:
    path = tmp_path / "notes.npy"
    path.write_text("just some text, not numpy at all\n")
    error = read_problem(path)
    assert "Python objects" not in str(error)
    assert error.message == f"input file {str(path)!r} is not a .npy/.npz file"


def test_zero_byte_npy(tmp_path: Path) -> None:
    path = tmp_path / "zero.npy"
    path.write_bytes(b"")
    read_problem(path)


def npy_bytes(array: np.ndarray) -> bytes:
    """The bytes ``np.save`` writes."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "header",
    [
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,",  # unterminated
        b"{'descr': 'xyz', 'fortran_order': False, 'shape': (2, 3), }",  # unknown dtype
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }",  # negative dim
        b"{'descr': '<f4', 'fortran_order': False}",  # missing key
        b"[1, 2, 3]",  # not a dict
        b"\xff\xfe\x00garbage",  # not text
    ],
)
def test_corrupt_npy_header(tmp_path: Path, header: bytes) -> None:
    raw = npy_bytes(np.zeros((2, 3), np.float32))
    path = tmp_path / "corrupt.npy"
    path.write_bytes(raw[:10] + header.ljust(118) + b"\n" + raw[128:])
    read_problem(path)


def test_header_claiming_a_huge_shape(tmp_path: Path) -> None:
    """A shape whose element count overflows int64 must not look like a tiny, complete file."""
    raw = npy_bytes(np.zeros((2, 4), np.float32))
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }"
    path = tmp_path / "huge.npy"
    path.write_bytes(raw[:10] + header.ljust(117) + b"\n" + raw[128:])
    read_problem(path)


def test_truncated_npy(tmp_path: Path) -> None:
    path = tmp_path / "trunc.npy"
    path.write_bytes(npy_bytes(np.zeros((2, 3), np.float32))[:-5])
    read_problem(path)


def test_bad_magic_only(tmp_path: Path) -> None:
    path = tmp_path / "magic.npy"
    path.write_bytes(b"\x93NUMPX" + npy_bytes(np.zeros(3))[6:])
    read_problem(path)


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_corrupt_npz_is_a_file_problem_and_leaves_no_file_open(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    before = open_files()
    assert read_problem(path).message == f"cannot read input file {str(path)!r}: File is not a zip file"
    assert open_files() == before  # np.load(path) itself leaks its handle on a corrupt zip


def test_hdf5_file_that_is_not_a_probe_archive(tmp_path: Path) -> None:
    """Its problem is said once, not wrapped in a second "not a readable .npy/.npz" message."""
    path = tmp_path / "other.h5"
    h5py.File(path, "w").close()
    expected = f"{str(path)!r} is an HDF5 file but not a probe archive (no probe_version attribute)"
    assert read_problem(path).message == expected


def test_missing_input_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.npy"
    assert read_problem(path).message == f"input file {str(path)!r} does not exist"
    error = feed_error([IMAGE], [InputArg("image", path)])
    assert isinstance(error, FileProblem)


def test_empty_directory_is_a_file_problem(tmp_path: Path) -> None:
    read_problem(tmp_path)


def test_inputs_from_an_archive_of_one_input_named_otherwise(tmp_path: Path) -> None:
    """A Keras file's ``input_layer`` feeds its SavedModel's ``keras_tensor_14``: one input each, so no doubt;
    with two inputs named otherwise, nothing is guessed."""
    from probe_cli.archive.writer import write_archive
    from probe_cli.core.types import Feed

    stored = np.arange(784, dtype=np.float32).reshape(1, 28, 28, 1)
    path = write_archive(tmp_path / "a.h5", [], [Feed("input_layer", stored, "random")], {"probe_version": "0"}, seed=0)
    renamed = InputSpec("keras_tensor_14", "float32", (None, 28, 28, 1), "keras_tensor_14:0")
    (feed,) = build_feeds([renamed], [InputArg(None, path)])
    assert feed.name == "keras_tensor_14" and feed.source == f"{path}:input_layer"
    np.testing.assert_array_equal(np.asarray(feed.array), stored)
    other = InputSpec("mask", "float32", (None, 28, 28, 1), "mask:0")
    assert "which is no input of the model" in feed_error([renamed, other], [InputArg(None, path)]).message
