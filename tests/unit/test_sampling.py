"""The statistics of ``--samples auto`` (envbisect.sampling), on the pure core only: the
t quantiles, the separation test, the plan's checks, and the recipe table's and flags'
sampling settings (the change-point search itself: test_changepoint.py)."""

from __future__ import annotations

import random

import pytest

from envbisect.errors import ConfigError
from envbisect.sampling import Direction, SamplingPlan, not_separated_message, separate, t_quantile

PLAN = SamplingPlan("loss")


@pytest.mark.parametrize("p, df, expected", [(0.99, 4, 3.747), (0.995, 6, 3.707), (0.99, 10, 2.764),
                                             (0.975, 20, 2.086), (0.995, 18, 2.878)])
def test_t_quantile_matches_the_tables(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, rel=0.005)


def test_separate_needs_a_real_gap_and_says_so():
    rng = random.Random(1)
    good = [rng.gauss(0, 1) for _ in range(5)]
    bad = [rng.gauss(4, 1) for _ in range(5)]
    sep = separate(good, bad, PLAN)
    assert sep.separated and sep.t > sep.critical and sep.good.n == 5
    same = separate(good, [x + 0.01 for x in good], PLAN)
    assert not same.separated
    message = not_separated_message(same, PLAN, "1.0", "1.7")
    assert "1.0 (good)" in message and "raise --max-samples" in message and "\n" not in message


def test_separate_takes_metrics_whose_squares_overflow():
    """A diverged loss of 1e200 is a number like any other (its square is not)."""
    sep = separate([1.0e200, 1.1e200, 0.9e200], [3.0e200, 3.1e200, 2.9e200], SamplingPlan("loss"))
    assert sep.separated and sep.sigma == pytest.approx(0.1e200)


def test_direction_refuses_a_bad_endpoint_that_is_better():
    plan = SamplingPlan("step_time", direction=Direction.HIGHER_IS_WORSE)
    sep = separate([2.0, 2.1, 1.9], [1.0, 1.1, 0.9], plan)  # the "bad" release got faster
    assert not sep.separated and sep.t < 0
    assert "better, not worse" in not_separated_message(sep, plan, "1.0", "1.7")
    assert separate([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], plan).separated
    assert separate([2.0, 2.1, 1.9], [1.0, 1.1, 0.9], SamplingPlan("x")).separated  # either way


@pytest.mark.parametrize("kwargs, needle", [({"metric": ""}, "--metric"), ({"confidence": 1.0}, "--confidence"),
                                            ({"confidence": 0.4}, "--confidence"), ({"max_samples": 2}, "--max-samples")])
def test_plan_checks_are_one_line_errors(kwargs, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        SamplingPlan(**{"metric": "loss", **kwargs})
    assert "\n" not in str(info.value)


def _recipe(tool: str = ""):
    from pathlib import Path

    from envbisect.recipes import parse_recipe_text

    header = "# /// script\n# dependencies = ['noisy']\n# [tool.envbisect]\n# package = 'noisy'\n"
    return parse_recipe_text(header + "".join(f"# {ln}\n" for ln in tool.splitlines()) + "# ///\n", Path("r.py"))


def test_sampling_for_takes_the_recipe_table_and_flags_win():
    from envbisect.cli_options import sampling_for

    recipe = _recipe('metric = "step_time"\nsamples = "auto"\ndirection = "higher-is-worse"\nmax-samples = 6')
    plan = sampling_for(None, None, None, None, None, recipe, retries=0, thresholds=[])
    assert plan == SamplingPlan("step_time", 0.99, 6, Direction.HIGHER_IS_WORSE)
    plan = sampling_for("loss", None, 0.95, 8, "lower-is-worse", recipe, retries=0, thresholds=[])
    assert plan == SamplingPlan("loss", 0.95, 8, Direction.LOWER_IS_WORSE)
    assert sampling_for(None, None, None, None, None, _recipe(), retries=3, thresholds=[]) is None


@pytest.mark.parametrize("args, kwargs, needle", [
    (("loss", None, None, None, None), {}, "only applies with --samples auto"),
    (("loss", "twice", None, None, None), {}, "not a mode"),
    (("loss", "auto", None, None, "up"), {}, "not a direction"),
    (("loss", "auto", 1.5, None, None), {}, "--confidence"),
    ((None, "auto", None, None, None), {}, "needs --metric"),
    (("loss", "auto", None, None, None), {"retries": 2}, "drop --retries"),
    (("loss", "auto", None, None, None), {"thresholds": ["loss>1"]}, "drop --threshold"),
])
def test_sampling_for_mistakes_are_one_line_errors(args, kwargs, needle):
    from envbisect.cli_options import sampling_for

    with pytest.raises(ConfigError, match=needle) as info:
        sampling_for(*args, _recipe(), **{"retries": 0, "thresholds": [], **kwargs})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("tool, needle", [('samples = "sometimes"', "samples"), ("max-samples = 1", "max-samples"),
                                          ("confidence = 1.2", "confidence"), ('direction = "up"', "direction")])
def test_recipe_table_sampling_keys_are_schema_checked(tool, needle):
    from envbisect.errors import RecipeError

    with pytest.raises(RecipeError, match=needle) as info:
        _recipe(tool)
    assert "\n" not in str(info.value)


def test_a_sample_without_the_metric_or_with_a_crash_decides_the_probe_untestable():
    from envbisect.noisy import sample_values
    from envbisect.policy import Outcome, RegressMode
    from envbisect.search import Verdict

    ok = {"exit_code": 0, "metrics": {"loss": 1.5}}
    values, failed = sample_values([ok, {"exit_code": 1, "metrics": {"loss": 2.5}}], PLAN, RegressMode.EXIT)
    assert values == [1.5, 2.5] and failed is None  # the exit status does not judge a sample
    values, failed = sample_values([ok, {"exit_code": 0, "metrics": {"other": 1}}], PLAN, RegressMode.EXIT)
    assert values == [1.5] and failed.verdict is Verdict.UNTESTABLE
    assert failed.reason.startswith("sample 2: metric loss missing or not a number")
    values, failed = sample_values([ok, {"exit_code": 0, "metrics": {"loss": float("inf")}}], PLAN, RegressMode.EXIT)
    assert values == [1.5] and failed.verdict is Verdict.UNTESTABLE  # an overflowed loss is no sample
    assert failed.reason.startswith("sample 2: metric loss is inf") and "--threshold" in failed.reason
    values, failed = sample_values([ok, {"exit_code": 0, "metrics": {"loss": -1.5e308}}], PLAN, RegressMode.EXIT)
    assert values == [1.5] and failed.reason.startswith("sample 2: metric loss is -1.5e+308")  # sums overflow
    _, crashed = sample_values([{"exit_code": None, "signal": 11}], PLAN, RegressMode.CRASH)
    assert crashed.outcome is Outcome.ERROR and crashed.verdict is Verdict.BAD  # --regress still decides crashes
