"""Which knob settings turn a bad result good: delta debugging over settings.

``bisect narrow`` asks this about the first bad environment of a run (:mod:`envbisect.narrow`
does the probing). The search is the culprit isolation's: Zeller's ddmin
(:func:`envbisect.culprits.ddmin`, reused as it is), here over knob *settings* with
"the recipe comes out good" as the property that must hold:

1. **Fine knobs, all at once.** Every fine-grained knob at its first value to try is probed
   in one environment. When that is not good, the next round sets each knob to its next
   value (a knob with fewer values keeps its last): ``TF_ENABLE_ONEDNN_OPTS = ["1", "0"]``
   is tried at ``1`` with everything else, then at ``0``.
2. **ddmin** shrinks the first good round to a 1-minimal set: no setting of it can be left
   out and stay good. Then, for each knob of that set with other values, the set is tried
   with each of them (the other values that are good too are reported).
3. **Coarse knobs** (a backend, all of Grappler, hiding the GPU) are each tried alone:
   they nearly always "fix" a compiler bug, so they are kept out of the ddmin set, where
   they would mask the precise answer, and reported beside it.
4. When no round of fine knobs was good, each fine setting is tried alone (it may be
   that two knobs together make the recipe untestable).

Knobs and settings are defined here (pure data); :mod:`envbisect.knobs` holds the
built-in sets and how a probe applies them. It is pure: probing one set of settings is a
callback, so it is unit-tested with scripted outcomes. An untestable probe counts as "not good", as ddmin treats unresolvable sets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from envbisect.culprits import ddmin
from envbisect.search import Verdict

Value = str | bool | int | float


@dataclass(frozen=True)
class Knob:
    """One setting and the values to try. ``env`` names an environment variable; otherwise
    ``module`` is the module whose import triggers ``action`` on ``target`` (see
    :mod:`envbisect.knob_startup`: ``set`` an attribute, ``call`` a function with the value,
    ``options``: call it with ``{key: value}``, ``helper``: a function of the hook).
    ``coarse`` knobs switch off a whole stage (a backend, all of Grappler, the GPU): they
    are tried one by one, apart from the fine-grained ones, so they never mask the answer."""

    name: str
    text: str
    values: tuple[Value, ...]
    env: str | None = None
    module: str | None = None
    action: str = "set"
    target: str = ""
    key: str | None = None
    frameworks: tuple[str, ...] = ()
    coarse: bool = False

    def settings(self) -> list[Setting]:
        return [Setting(self.name, v) for v in self.values]


@dataclass(frozen=True, order=True)
class Setting:
    """One knob at one value: the unit ``narrow`` searches over."""

    knob: str
    value: Value

    def to_dict(self) -> dict:
        return {"knob": self.knob, "value": self.value}


Tester = Callable[[tuple[Setting, ...]], Verdict]


class Answer(str, Enum):
    """What narrowing concluded."""

    #: A 1-minimal set of fine-grained settings turns the result good.
    SETTINGS = "settings"
    #: Only a coarse knob (a whole backend or stage switched off) turns it good.
    COARSE = "coarse"
    #: No knob tried, alone or together, turns it good.
    NONE = "none"
    #: No knob applies to this environment (no known framework, none declared).
    NO_KNOBS = "no-knobs"


@dataclass(frozen=True)
class Trial:
    settings: tuple[Setting, ...]
    verdict: Verdict

    def to_dict(self) -> dict:
        return {"settings": [s.to_dict() for s in self.settings], "verdict": self.verdict.value}


@dataclass(frozen=True)
class Narrowing:
    """The answer: the minimal settings, the other values and coarse knobs that are good
    too, the knobs that were in play, and every trial in order."""

    answer: Answer
    minimal: tuple[Setting, ...]
    also: tuple[Setting, ...]
    coarse: tuple[Setting, ...]
    tried: tuple[str, ...]
    trials: tuple[Trial, ...] = field(default=())


class _Trials:
    """Runs and remembers trials: no set of settings is probed twice."""

    def __init__(self, test: Tester) -> None:
        self.test = test
        self.seen: dict[frozenset[Setting], Verdict] = {}
        self.log: list[Trial] = []

    def good(self, settings: Sequence[Setting]) -> bool:
        key = frozenset(settings)
        if key not in self.seen:
            ordered = tuple(sorted(settings))
            self.seen[key] = Verdict(self.test(ordered))
            self.log.append(Trial(ordered, self.seen[key]))
        return self.seen[key] is Verdict.GOOD


def rounds(knobs: Sequence[Knob]) -> list[list[Setting]]:
    """The all-at-once configurations of step 1: round r sets each knob to its r-th value
    (its last one when it has fewer)."""
    depth = max((len(k.values) for k in knobs), default=0)
    return [[Setting(k.name, k.values[min(r, len(k.values) - 1)]) for k in knobs] for r in range(depth)]


def narrow(knobs: Sequence[Knob], test: Tester) -> Narrowing:
    """Find what turns the bad result good; ``test(settings)`` probes the first bad
    environment with ``settings`` applied and returns its verdict (see the module docstring)."""
    fine = [k for k in knobs if not k.coarse]
    coarse = [k for k in knobs if k.coarse]
    names = tuple(k.name for k in knobs)
    if not knobs:
        return Narrowing(Answer.NO_KNOBS, (), (), (), names)
    trials = _Trials(test)
    minimal: list[Setting] = []
    also: list[Setting] = []
    start = next((config for config in rounds(fine) if trials.good(config)), None)
    if start is not None:
        minimal = sorted(ddmin(list(start), trials.good))  # type: ignore[arg-type]
        by_name = {k.name: k for k in fine}
        for s in minimal:
            rest = [m for m in minimal if m != s]
            also += [Setting(s.knob, v) for v in by_name[s.knob].values
                     if v != s.value and trials.good([*rest, Setting(s.knob, v)])]
    elif fine:
        singles = [s for k in fine for s in k.settings()]
        alone = [s for s in singles if trials.good([s])]
        minimal, also = alone[:1], alone[1:]
    flips = tuple(s for k in coarse for s in k.settings() if trials.good([s]))
    if minimal:
        answer = Answer.SETTINGS
    else:
        answer = Answer.COARSE if flips else Answer.NONE
    return Narrowing(answer, tuple(minimal), tuple(also), flips, names, tuple(trials.log))
