"""policy: raw results -> outcome and verdict, thresholds, retries; pure, no processes."""

from __future__ import annotations

import math
import signal

import pytest

from envbisect.errors import ConfigError
from envbisect.policy import (
    Judgement,
    Outcome,
    RegressMode,
    Threshold,
    combine,
    install_failure,
    judge,
)
from envbisect.runner import RawResult
from envbisect.search import Verdict

G, B, U = Verdict.GOOD, Verdict.BAD, Verdict.UNTESTABLE


def raw(
    exit_code: int | None = 0,
    *,
    sig: int | None = None,
    timed_out: bool = False,
    duration_s: float = 1.5,
    metrics: dict | None = None,
) -> RawResult:
    return RawResult(
        exit_code=exit_code,
        signal=sig,
        timed_out=timed_out,
        duration_s=duration_s,
        stdout_tail="out",
        stderr_tail="err",
        log_path="/tmp/probe.log",
        metrics=metrics,
        metrics_note=None,
    )


# Each row: the raw result, then (outcome, verdict) under EXIT, ERROR and CRASH modes.
TABLE = [
    ("exit 0", raw(0), Outcome.GOOD, (G, G, G)),
    ("exit 1", raw(1), Outcome.BAD, (B, B, B)),
    ("exit 125: cannot test here", raw(125), Outcome.SKIP, (U, U, U)),
    ("exit 3", raw(3), Outcome.ERROR, (U, B, U)),
    ("exit 2", raw(2), Outcome.ERROR, (U, B, U)),
    ("exit 126", raw(126), Outcome.ERROR, (U, B, U)),
    ("killed by SIGSEGV", raw(None, sig=signal.SIGSEGV), Outcome.ERROR, (U, B, B)),
    ("killed by SIGKILL", raw(None, sig=signal.SIGKILL), Outcome.ERROR, (U, B, B)),
    ("timed out after 600 s", raw(None, timed_out=True, duration_s=600.2), Outcome.ERROR, (U, B, B)),
    ("timed out after 1.0 s", raw(None, sig=15, timed_out=True, duration_s=1.02), Outcome.ERROR, (U, B, B)),
    ("ended without an exit status", raw(None), Outcome.ERROR, (U, B, U)),
]


@pytest.mark.parametrize("reason, result, outcome, verdicts", TABLE, ids=[row[0] for row in TABLE])
@pytest.mark.parametrize("mode_index, mode", list(enumerate(RegressMode)))
def test_judge_table(reason, result, outcome, verdicts, mode_index, mode):
    assert list(RegressMode) == [RegressMode.EXIT, RegressMode.ERROR, RegressMode.CRASH]
    judgement = judge(result, mode)
    assert judgement == Judgement(outcome, verdicts[mode_index], reason)


def test_default_mode_is_exit_and_mode_accepts_its_string_value():
    assert judge(raw(3)).verdict is U
    assert judge(raw(3), "error").verdict is B  # type: ignore[arg-type]


def test_unnamed_signal_number_is_still_reported():
    assert judge(raw(None, sig=99)).reason == "killed by signal 99"


def test_timeout_wins_over_an_exit_status_the_recipe_managed_to_give():
    # A recipe that caught SIGTERM and exited 0 still ran out of time.
    assert judge(raw(0, timed_out=True, duration_s=2.0)).outcome is Outcome.ERROR


# --- dict form (as stored) ----------------------------------------------------------


def test_round_trip_through_dict():
    original = raw(1, metrics={"max_abs_diff": 41.7, "device": "GPU:0"})
    assert RawResult.from_dict(original.to_dict()) == original


def test_judge_accepts_the_stored_dict_form_with_extra_columns():
    row = dict(raw(1, metrics={"max_abs_diff": 1e-6}).to_dict(), id=7, run_id=3, outcome="bad", timed_out=0)
    assert judge(row) == Judgement(Outcome.BAD, B, "exit 1")
    # Stored probes can be re-judged with a threshold without re-running them.
    rejudged = judge(row, thresholds=[Threshold.parse("max_abs_diff>1e-3")])
    assert (rejudged.outcome, rejudged.verdict) == (Outcome.GOOD, G)


def test_from_dict_tolerates_missing_optional_fields_and_metrics_as_text():
    result = RawResult.from_dict({"exit_code": None, "signal": 11, "metrics": '{"a": 1}'})
    assert result.metrics == {"a": 1}
    assert result.timed_out is False and result.stdout_tail == ""
    assert judge({"exit_code": None, "signal": 11}).reason == "killed by SIGSEGV"
    assert RawResult.from_dict({"exit_code": 0, "metrics": "{broken"}).metrics is None


# --- thresholds ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("max_abs_diff>1e-3", Threshold("max_abs_diff", ">", 1e-3)),
        (" max_abs_diff >= 0.5 ", Threshold("max_abs_diff", ">=", 0.5)),
        ("accuracy<0.9", Threshold("accuracy", "<", 0.9)),
        ("stats.rel_err<=-2", Threshold("stats.rel_err", "<=", -2.0)),
        ("loss>inf", Threshold("loss", ">", math.inf)),
    ],
)
def test_threshold_parse(text, expected):
    assert Threshold.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["", "max_abs_diff", "max_abs_diff>", ">1e-3", "max_abs_diff=1e-3", "max_abs_diff==1",
             "max_abs_diff>abc", "max_abs_diff>nan", "1x>3", "a>1 2", "a=>1"]
)
def test_threshold_parse_errors_are_one_line_config_errors(text):
    with pytest.raises(ConfigError) as info:
        Threshold.parse(text)
    message = str(info.value)
    assert "\n" not in message and repr(text) in message and "max_abs_diff>1e-3" in message


def test_threshold_str_round_trips():
    threshold = Threshold.parse("max_abs_diff>=1e-3")
    assert Threshold.parse(str(threshold)) == threshold


@pytest.mark.parametrize(
    "exit_code, metrics, texts, outcome, reason",
    [
        (1, {"max_abs_diff": 41.7}, ["max_abs_diff>1e-3"], Outcome.BAD, "max_abs_diff=41.7 > 0.001"),
        (0, {"max_abs_diff": 41.7}, ["max_abs_diff>1e-3"], Outcome.BAD,
         "max_abs_diff=41.7 > 0.001 (recipe exited 0)"),
        (1, {"max_abs_diff": 1e-5}, ["max_abs_diff>1e-3"], Outcome.GOOD,
         "max_abs_diff=1e-05 not > 0.001 (recipe exited 1)"),
        (0, {"max_abs_diff": 1e-3}, ["max_abs_diff>1e-3"], Outcome.GOOD, "max_abs_diff=0.001 not > 0.001"),
        (0, {"max_abs_diff": 1e-3}, ["max_abs_diff>=1e-3"], Outcome.BAD,
         "max_abs_diff=0.001 >= 0.001 (recipe exited 0)"),
        (0, {"accuracy": 0.5}, ["accuracy<0.9"], Outcome.BAD, "accuracy=0.5 < 0.9 (recipe exited 0)"),
        (0, {"accuracy": 0.9}, ["accuracy<=0.9"], Outcome.BAD, "accuracy=0.9 <= 0.9 (recipe exited 0)"),
        (0, {"nested": {"rel": 2}}, ["nested.rel>1"], Outcome.BAD, "nested.rel=2 > 1 (recipe exited 0)"),
        (0, {"max_abs_diff": math.nan}, ["max_abs_diff>1e-3"], Outcome.BAD,
         "max_abs_diff=nan > 0.001 (recipe exited 0)"),
        (0, {"n": 10**400}, ["n>5"], Outcome.BAD, "n=inf > 5 (recipe exited 0)"),
        # Several thresholds: any one met is enough.
        (0, {"a": 1, "b": 5}, ["a>2", "b>2"], Outcome.BAD, "b=5 > 2 (recipe exited 0)"),
        (1, {"a": 1, "b": 1}, ["a>2", "b>2"], Outcome.GOOD, "a=1 not > 2; b=1 not > 2 (recipe exited 1)"),
    ],
)
def test_thresholds_decide_runs_that_exited_0_or_1(exit_code, metrics, texts, outcome, reason):
    judgement = judge(raw(exit_code, metrics=metrics), thresholds=[Threshold.parse(t) for t in texts])
    assert judgement == Judgement(outcome, G if outcome is Outcome.GOOD else B, reason)


@pytest.mark.parametrize(
    "metrics", [None, {}, {"max_abs_diff": "41.7"}, {"max_abs_diff": True}, {"max_abs_diff": None}]
)
@pytest.mark.parametrize("exit_code", [0, 1])
@pytest.mark.parametrize("mode", list(RegressMode))
def test_missing_or_non_numeric_metric_is_an_error_never_a_silent_exit_verdict(metrics, exit_code, mode):
    # Judging by a number the recipe did not give must not fall back to the exit status.
    judgement = judge(raw(exit_code, metrics=metrics), mode, thresholds=[Threshold.parse("max_abs_diff>1e-3")])
    assert (judgement.outcome, judgement.verdict) == (Outcome.ERROR, U)
    assert judgement.reason.startswith(f"threshold metric max_abs_diff missing or not a number (recipe exited {exit_code})")


def test_one_metric_missing_cannot_clear_a_run_but_one_met_still_condemns_it():
    thresholds = [Threshold.parse("a>2"), Threshold.parse("missing>2")]
    assert judge(raw(1, metrics={"a": 1}), thresholds=thresholds).outcome is Outcome.ERROR
    assert judge(raw(0, metrics={"a": 3}), thresholds=thresholds).outcome is Outcome.BAD


@pytest.mark.parametrize("result", [raw(125, metrics={"d": 9}), raw(3, metrics={"d": 9}),
                                    raw(None, sig=11, metrics={"d": 9})])
def test_thresholds_never_apply_to_skips_and_errors(result):
    assert judge(result, thresholds=[Threshold.parse("d>1")]) == judge(result)


# --- install failures and retries ---------------------------------------------------


def test_install_failure_is_an_untestable_skip():
    assert install_failure("no wheel for this platform") == Judgement(
        Outcome.SKIP, U, "install failed: no wheel for this platform"
    )


GOOD_J = Judgement(Outcome.GOOD, G, "exit 0")
BAD_J = Judgement(Outcome.BAD, B, "exit 1")
SKIP_J = Judgement(Outcome.SKIP, U, "exit 125: cannot test here")
ERR_J = Judgement(Outcome.ERROR, U, "exit 3")


@pytest.mark.parametrize("j", [GOOD_J, BAD_J, SKIP_J])
def test_combine_all_agree(j):
    assert combine([j]) == (j, False)
    assert combine([j, j, j]) == (j, False)


def test_combine_same_verdict_different_reasons_keeps_the_first():
    assert combine([ERR_J, SKIP_J]) == (ERR_J, False)


@pytest.mark.parametrize(
    "runs, reason",
    [
        ([GOOD_J, GOOD_J, BAD_J], "flaky: 2 good, 1 bad"),
        ([BAD_J, GOOD_J], "flaky: 1 good, 1 bad"),
        ([BAD_J, SKIP_J, GOOD_J], "flaky: 1 good, 1 bad, 1 untestable"),
    ],
)
def test_combine_disagreement_is_flaky_and_untestable(runs, reason):
    assert combine(runs) == (Judgement(Outcome.SKIP, U, reason), True)


def test_combine_untestable_runs_beside_one_decided_verdict_keep_that_verdict():
    judgement, flaky = combine([ERR_J, BAD_J, BAD_J])
    assert not flaky
    assert judgement == Judgement(Outcome.BAD, B, "exit 1 (1 of 3 runs untestable)")


def test_combine_needs_a_judgement():
    with pytest.raises(ValueError):
        combine([])


def test_uncaught_exception_status_is_an_error_named_after_the_exception():
    from envbisect.runner import EXIT_UNCAUGHT

    raw = {"exit_code": EXIT_UNCAUGHT, "signal": None, "timed_out": False, "duration_s": 0.1,
           "stderr_tail": "Traceback (most recent call last):\n  ...\nImportError: cannot import name 'x'\n"}
    j = judge(raw)
    assert j.outcome is Outcome.ERROR and j.verdict is Verdict.UNTESTABLE
    assert j.reason == "uncaught ImportError: cannot import name 'x'"
    assert judge(raw, RegressMode.ERROR).verdict is Verdict.BAD
