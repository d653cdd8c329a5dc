"""Unbounded plans and hostile arguments: each is refused at once with a message naming what is wrong, the limit and
the fix; never a traceback, a hang, or a silent wrong result. The CLI runs against the project's Runware-speaking
server on 127.0.0.1, which also shows that nothing was sent."""

from __future__ import annotations

import math
import time

import pytest
from click.testing import CliRunner
from sweep_testkit import KEY, PricedEngine, served

from kandinsky_nb.cli import main
from kandinsky_nb.errors import ConfigurationError, RequestValidationError, SweepError
from kandinsky_nb.planning import MAX_CELLS, MAX_VALUES_PER_AXIS, design_sweep
from kandinsky_nb.session import Session
from kandinsky_nb.types import ImageInferenceRequest

HUGE = "9" * 5000


@pytest.fixture
def cloud(monkeypatch):
    with served(PricedEngine()) as (url, state):
        monkeypatch.setenv("RUNWARE_API_KEY", KEY)
        monkeypatch.setenv("RUNWARE_BASE_URL", url)
        yield state


def invoke(*arguments: str):
    result = CliRunner().invoke(main, list(arguments))
    # Only the toolkit's own refusals come out: click's usage errors (2) or a ClickException (1), never a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


@pytest.mark.parametrize(
    ("option", "value", "axis"),
    [
        ("--cfg", "2-10 [50000000]", "CFGScale"),
        ("--cfg", f"2-10 [{HUGE}]", "CFGScale"),
        ("--steps", "1-1000000", "steps"),
        ("--seed", "1-99999999999", "seed"),
        ("--seed", ",".join(str(n) for n in range(MAX_VALUES_PER_AXIS + 1)), "seed"),
    ],
)
def test_an_axis_past_its_limit_is_refused_at_once_naming_the_axis_and_the_limit(cloud, tmp_path, option, value, axis):
    started = time.perf_counter()
    result = invoke("sweep", "a fox", option, value, "--estimate", "--out", str(tmp_path))
    assert time.perf_counter() - started < 20  # before: minutes and gigabytes for the first one
    assert result.exit_code == 1
    assert f"axis {axis!r}" in result.output and "10,000" in result.output
    assert not cloud.generations


def test_a_product_of_axes_past_the_plan_limit_names_each_axis_and_the_limit(cloud, tmp_path):
    result = invoke("sweep", "a fox", "--seed", "1-100", "--steps", "10-50", "--cfg", "2-10 [10]", "--estimate")
    assert result.exit_code == 1
    assert "41,000 cells" in result.output
    assert "steps[41]" in result.output and "CFGScale[10]" in result.output and "seed[100]" in result.output
    assert f"limit of {MAX_CELLS:,}" in result.output and "--max-cells" in result.output
    assert not cloud.generations


def test_the_plan_limit_can_be_lowered_or_raised(cloud, tmp_path):
    refused = invoke("sweep", "a fox", "--seed", "1-12", "--max-cells", "10", "--estimate")
    assert refused.exit_code == 1 and "12 cells" in refused.output and "limit of 10 per plan" in refused.output
    allowed = invoke("sweep", "a fox", "--seed", "1-12", "--max-cells", "12", "--estimate")
    assert allowed.exit_code == 0 and "12 cells" in allowed.output
    with pytest.raises(SweepError, match=r"12 cells \(seed\[12\]\), more than the limit of 10"):
        design_sweep("a fox", axes={"seed": "1-12"}, max_cells=10)
    assert len(design_sweep("a fox", axes={"seed": "1-12"}, max_cells=12).cells) == 12
    with pytest.raises(ConfigurationError, match="max_cells=0"):
        design_sweep("a fox", axes={"seed": "1-2"}, max_cells=0)


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        (["runs", "list", "--limit", "-5"], "--limit"),
        (["runs", "list", "--limit", "0"], "--limit"),
        (["sweep", "a fox", "--seed", "1", "--concurrency", "0"], "--concurrency"),
        (["sweep", "a fox", "--seed", "1", "--concurrency", "-1"], "--concurrency"),
        (["sweep", "a fox", "--seed", "1", "--max-cells", "0"], "--max-cells"),
        (["sweep", "a fox", "--seed", "1", "--budget", "-1"], "--budget"),
        (["sweep", "a fox", "--seed", "1", "--name", "two\nlines"], "--name"),
        (["sweep", "a fox", "--seed", "1", "--name", "x" * 201], "--name"),
        (["generate", "a fox", "--seed", HUGE], "--seed"),
    ],
)
def test_an_out_of_range_option_is_a_usage_error_naming_it(cloud, tmp_path, arguments, option):
    result = invoke(*arguments, "--home", str(tmp_path / "home"))
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert not cloud.generations


def test_runs_list_with_a_negative_limit_no_longer_lists_everything(tmp_path):
    # Before: --limit -5 was tail(-5), i.e. every row but the first five, silently.
    result = invoke("runs", "list", "--home", str(tmp_path), "--limit", "-5")
    assert result.exit_code == 2 and "-5 is not in the range x>=1" in result.output


@pytest.mark.parametrize("command", [["runs", "list"], ["sweep", "a fox", "--seed", "1", "--estimate"]])
def test_a_home_that_cannot_be_written_is_refused_before_anything_runs(cloud, tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke(*command, "--home", str(blocker / "home"))
    assert result.exit_code == 2
    assert "Invalid value for '--home'" in result.output and "cannot be used as the run-log folder" in result.output
    assert "give a folder you can create and write" in result.output
    assert not cloud.generations


def test_an_unwritable_home_from_the_environment_is_named(cloud, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("KANDINSKY_NB_HOME", str(blocker / "home"))
    result = invoke("runs", "list")
    assert result.exit_code == 2 and "$KANDINSKY_NB_HOME" in result.output


@pytest.mark.parametrize("command", [["generate", "a fox"], ["sweep", "a fox", "--seed", "1"]])
def test_an_output_folder_that_cannot_be_written_is_refused_before_anything_is_paid(cloud, tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke(*command, "--out", str(blocker / "out"), "--home", str(tmp_path / "home"))
    assert result.exit_code == 2 and "cannot be used as the output folder" in result.output
    assert not cloud.generations


@pytest.mark.parametrize("prompt", ["   ", "\t\n", "\u3000\u3000"])
def test_a_whitespace_only_prompt_is_refused_naming_the_field(cloud, tmp_path, prompt):
    result = invoke("generate", prompt, "--out", str(tmp_path), "--home", str(tmp_path / "home"))
    assert result.exit_code == 1
    assert "positivePrompt=" in result.output and "must contain text, not only whitespace" in result.output
    assert not cloud.generations
    with pytest.raises(RequestValidationError) as caught:
        ImageInferenceRequest(positivePrompt=prompt)
    assert caught.value.fields == ["positivePrompt"]


def test_a_5000_digit_number_is_refused_cleanly_wherever_it_comes_in(cloud, tmp_path):
    with pytest.raises(RequestValidationError, match=r"seed=<a 16610-bit integer>: input should be less than"):
        ImageInferenceRequest(positivePrompt="a fox", seed=10**5000)
    with pytest.raises(RequestValidationError):
        ImageInferenceRequest.model_validate_json('{"positivePrompt": "a fox", "steps": ' + HUGE + "}")
    with pytest.raises(SweepError, match="more than 20 digits"):
        design_sweep("a fox", axes={"seed": HUGE})
    with pytest.raises(SweepError, match="larger than any field takes"):
        design_sweep("a fox", axes={"seed": [10**5000]})
    result = invoke("sweep", "a fox", "--seed", HUGE, "--estimate")
    assert result.exit_code == 1 and "more than 20 digits" in result.output


@pytest.mark.parametrize("value", ["nan", "NaN", "Infinity", "-inf", "sNaN", "1e999999999"])
def test_non_finite_and_astronomical_axis_values_are_refused(value):
    started = time.perf_counter()
    with pytest.raises(SweepError, match="axis 'CFGScale'"):
        design_sweep("a fox", axes={"cfg": value})
    assert time.perf_counter() - started < 5  # "1e999999999" on an int axis used to build a billion-digit integer


def test_a_huge_iterable_of_axis_values_is_not_read_past_the_limit():
    with pytest.raises(SweepError, match="more than the 10,000 values an axis may have"):
        design_sweep("a fox", axes={"seed": range(10**12)})


def test_a_sweep_name_cannot_write_outside_the_output_folder(cloud, tmp_path):
    out = tmp_path / "deep" / "out"
    result = invoke("sweep", "a fox", "--seed", "1", "--name", "../../escaped", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert not list(tmp_path.glob("escaped*")) and not list((tmp_path / "deep").glob("escaped*"))
    [grid] = out.glob("*-grid.png")
    assert grid.parent == out and "escaped" in grid.name


def test_a_session_home_that_cannot_be_created_is_a_configuration_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(
        ConfigurationError, match=r"cannot be used as the run-log folder .*give a folder you can create"
    ):
        Session("runware", api_key=KEY, base_url="http://127.0.0.1:9", home=blocker / "home")


@pytest.mark.parametrize("bad", [0, -1, 1.5, math.nan, True, "4"])
def test_counts_that_are_not_whole_numbers_of_at_least_one_are_refused(bad, tmp_path):
    with pytest.raises(ConfigurationError, match=r"concurrency=.* give a whole number of at least 1"):
        Session("runware", api_key=KEY, base_url="http://127.0.0.1:9", home=tmp_path, concurrency=bad)
    with Session("runware", api_key=KEY, base_url="http://127.0.0.1:9", home=tmp_path) as session:
        plan = session.sweep("a fox", seed="1-2")
        with pytest.raises(ConfigurationError, match=r"concurrency="):
            plan.run(bad, progress=False)
        with pytest.raises(ConfigurationError, match=r"batch_size="):
            plan.run(progress=False, batch_size=bad)
        with pytest.raises(ConfigurationError, match=r"max_cells="):
            session.sweep("a fox", seed="1-2", max_cells=bad)


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        (["serve", "--demo", "--port", "70000"], "--port"),
        (["serve", "--demo", "--port", "0"], "--port"),
        (["serve", "--demo", "--max-concurrency", "0"], "--max-concurrency"),
        (["serve", "--demo", "--max-concurrency", "-1"], "--max-concurrency"),
    ],
)
def test_serve_refuses_an_out_of_range_option_before_starting(arguments, option):
    result = invoke(*arguments)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
