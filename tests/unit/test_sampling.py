"""The statistics of ``--samples auto`` (envbisect.sampling), on the pure core only: the
t quantiles, the endpoints' separation test, the sequential classification, the plan's
checks, and seeded simulated bisections (tests/support/noise_sim.py) through the same
search state machine a run uses, for accuracy and cost against fixed ``--retries 4``."""

from __future__ import annotations

import random

import pytest

from envbisect.errors import ConfigError
from envbisect.sampling import (Decision, Direction, SamplingPlan, Separation, Summary, classify, endpoint_rounds,
                                not_separated_message, separate, t_quantile)
from support.noise_sim import adaptive, draws, fixed

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


def test_direction_refuses_a_bad_endpoint_that_is_better():
    plan = SamplingPlan("step_time", direction=Direction.HIGHER_IS_WORSE)
    sep = separate([2.0, 2.1, 1.9], [1.0, 1.1, 0.9], plan)  # the "bad" release got faster
    assert not sep.separated and sep.t < 0
    assert "better, not worse" in not_separated_message(sep, plan, "1.0", "1.7")
    assert separate([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], plan).separated
    assert separate([2.0, 2.1, 1.9], [1.0, 1.1, 0.9], SamplingPlan("x")).separated  # either way


def test_constant_endpoints_classify_exact_matches():
    sep = separate([1.0] * 3, [2.0] * 3, PLAN)
    assert sep.separated
    assert classify([1.0], sep, PLAN).decision is Decision.GOOD
    assert classify([2.0], sep, PLAN).decision is Decision.BAD
    assert classify([1.5], sep, PLAN).decision is Decision.AMBIGUOUS


def _ends(n=6, gap=3.0):
    return Separation(Summary(n, 0.0, 1.0), Summary(n, gap, 1.0), 1.0, 9.0, 3.0, True, 0.99)


def test_classify_decides_clear_candidates_in_few_samples():
    ends = _ends()
    assert classify([], ends, PLAN).decision is Decision.MORE
    good = classify([0.1, -0.2], ends, PLAN)
    assert good.decision is Decision.GOOD and "like the good release at 99%" in good.reason
    assert classify([3.1, 2.8], ends, PLAN).decision is Decision.BAD


def test_undecided_at_the_cap_is_ambiguous_with_the_reason():
    plan = SamplingPlan("loss", max_samples=4)
    values = [1.5, 1.4, 1.6, 1.5]  # right between
    assert classify(values[:3], _ends(), plan).decision is Decision.MORE
    c = classify(values, _ends(), plan)
    assert c.decision is Decision.AMBIGUOUS and c.reason.startswith("ambiguous after 4 samples: between good and bad")


def test_unlike_both_is_ambiguous_before_the_cap():
    c = classify([1.5] * 6, _ends(n=200, gap=6.0), PLAN)
    assert c.decision is Decision.AMBIGUOUS and "unlike both" in c.reason and c.n == 6


@pytest.mark.parametrize("kwargs, needle", [({"metric": ""}, "--metric"), ({"confidence": 1.0}, "--confidence"),
                                            ({"confidence": 0.4}, "--confidence"), ({"max_samples": 2}, "--max-samples")])
def test_plan_checks_are_one_line_errors(kwargs, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        SamplingPlan(**{"metric": "loss", **kwargs})
    assert "\n" not in str(info.value)


def test_endpoint_rounds_run_from_three_to_the_cap():
    assert list(endpoint_rounds(SamplingPlan("x", max_samples=5))) == [3, 4, 5]


def _trials(d: float, count: int, n: int = 16):
    for seed in range(count):
        first_bad = random.Random(seed).randrange(1, n)
        yield n, first_bad, seed


def test_d3_shift_is_found_in_19_of_20_trials_with_fewer_runs_than_retries_4():
    """The issue's accuracy test, on the pure core with simulated draws: 20 seeded trials
    of 16 releases, the mean shifting by 3 sd at a random release."""
    found = runs = fixed_runs = fixed_found = 0
    for n, first_bad, seed in _trials(3, 20):
        trial = adaptive(n, first_bad, draws(n, first_bad, 3, seed), PLAN)
        found += trial.found
        runs += trial.runs
        baseline = fixed(n, first_bad, draws(n, first_bad, 3, seed), 3, 4, majority=True)
        fixed_found += baseline.found
        fixed_runs += baseline.runs
    assert found >= 19
    assert runs < fixed_runs  # and with an accuracy at least that of the majority vote of 5 runs
    assert found >= fixed_found - 1


def test_a_candidate_exactly_between_is_never_decided_without_evidence():
    """A halfway release: whatever the test decides, the decision rests on its own
    samples (at least one), and over many trials a share comes out ambiguous."""
    ambiguous = 0
    for seed in range(100):
        rng = random.Random(seed)
        sep = separate([rng.gauss(0, 1) for _ in range(6)], [rng.gauss(6, 1) for _ in range(6)], PLAN)
        values: list[float] = []
        while (c := classify(values, sep, PLAN)).decision is Decision.MORE:
            values.append(rng.gauss(3, 1))
        ambiguous += c.decision is Decision.AMBIGUOUS
        assert c.n >= 1
    assert ambiguous >= 20


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
    _, crashed = sample_values([{"exit_code": None, "signal": 11}], PLAN, RegressMode.CRASH)
    assert crashed.outcome is Outcome.ERROR and crashed.verdict is Verdict.BAD  # --regress still decides crashes
