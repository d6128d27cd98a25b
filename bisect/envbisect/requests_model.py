"""What a run is asked: the request models and the helpers that turn them into requirements.

Plain data, no I/O: :class:`Judging` (how each probe is run and judged),
:class:`BisectRequest` (``bisect run`` by version), :class:`DepsMode`, and the rules that
build a candidate's requirement list from the recipe, ``--with`` pins and the candidate.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from enum import Enum

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envbisect.compare import Reference, Tolerance, settled
from envbisect.errors import ConfigError, first_line
from envbisect.policy import Judgement, RegressMode, Threshold
from envbisect.recipes import Recipe
from envbisect.sampling import SamplingPlan
from envbisect.signatures import Signature
from envbisect.verdicts import judge_probe


@dataclass(frozen=True)
class Judging:
    """How every probe of a run is run and judged (stored with the run)."""

    timeout: float = 600.0
    regress: RegressMode = RegressMode.EXIT
    thresholds: tuple[Threshold, ...] = ()
    retries: int = 0
    #: ``--samples auto``: releases sampled until the change is found (envbisect.noisy).
    sampling: SamplingPlan | None = None
    #: The reference release's outputs (``--diverge-from``), once its probe ran.
    reference: Reference | None = None
    tolerance: Tolerance = Tolerance()
    signature: Signature | None = None

    @property
    def attempts(self) -> int:
        return 1 + self.retries

    def judge(self, raw) -> Judgement:
        """Judge a fresh raw result or a stored row under every setting (:mod:`envbisect.verdicts`)."""
        return judge_probe(raw, self.regress, self.thresholds, self.reference, self.tolerance, self.signature)

    @property
    def numerics(self) -> Numerics:
        """The reference release's name, the tolerances and the signature judged with."""
        return Numerics(self.reference.version if self.reference else None, self.tolerance, self.signature)

    def reusable(self, row: dict) -> bool:
        """Whether a stored probe can be judged here from what it stored: against a
        reference, it must have outputs, each identical to the reference's or measured
        against these very reference contents."""
        if self.reference is None or row.get("exit_code") not in (0, 1):
            return True
        # No manifest: a row recorded before outputs existed (or one that wrote none) runs again.
        return bool(row.get("outputs")) and settled(row.get("outputs"), row.get("comparison"), self.reference)

    def as_dict(self) -> dict:
        return {"timeout": self.timeout, "regress": self.regress.value, "retries": self.retries,
                "thresholds": [str(t) for t in self.thresholds],
                **({"sampling": self.sampling.as_dict()} if self.sampling else {})}


@dataclass(frozen=True)
class Numerics:
    """How outputs and failures are judged besides the exit: the reference release
    (``--diverge-from`` / ``reference``), the tolerances and the failure signature.

    One resolution for every command that judges (``bisect run``, ``bisect matrix``,
    ``bisect show --rerun``, the watch daemon's checks and bisections): flags first, then
    the recipe's ``[tool.envbisect]`` table (:meth:`of`)."""

    diverge_from: str | None = None
    tolerance: Tolerance = Tolerance()
    signature: Signature | None = None

    @classmethod
    def of(cls, recipe: Recipe, diverge_from: str | None = None, rtol: float | None = None,
           atol: float | None = None, signature: str | None = None) -> Numerics:
        """The flags given (None: not given), falling back to the recipe's ``reference``,
        ``rtol``, ``atol``, ``signature`` and ``signature-exception``."""
        rec = recipe.settings
        reference = diverge_from or rec.reference
        for flag, value in (("--rtol", rtol), ("--atol", atol)):
            if value is not None and not value >= 0:
                raise ConfigError(f"{flag} {value:g} is negative or not a number; pass e.g. {flag} 1e-5")
        if (rtol is not None or atol is not None) and not reference:
            raise ConfigError("--rtol/--atol judge outputs against a reference: pass --diverge-from VERSION "
                              "or set reference in the recipe's [tool.envbisect] table")
        defaults = Tolerance()
        tolerance = Tolerance(next(v for v in (rtol, rec.rtol, defaults.rtol) if v is not None),
                              next(v for v in (atol, rec.atol, defaults.atol) if v is not None))
        sig = Signature(signature or rec.signature, rec.signature_exception)
        return cls(reference, tolerance, sig if sig else None)

    def judging(self, base: Judging) -> Judging:
        """``base`` judging with these tolerances and signature (the reference's outputs are
        added once its probe ran: :func:`envbisect.reference.establish`)."""
        return replace(base, tolerance=self.tolerance, signature=self.signature)


class DepsMode(str, Enum):
    """``--deps``: how a bisection resolves the recipe's dependencies other than the
    bisected package (see the README's "Combinations, dates and culprits")."""

    #: The newest compatible versions as of the run's snapshot, for every candidate.
    LATEST = "latest"
    #: As of each candidate's upload time (uv --exclude-newer), the candidate exempt.
    AS_OF_RELEASE = "as-of-release"


@dataclass
class BisectRequest:
    recipe: Recipe
    package: str
    spec: str | None = None
    good: str | None = None
    bad: str | None = None
    verify: bool = True
    with_: tuple[str, ...] = ()
    pre: bool = False
    timeout: float = 600.0
    regress: RegressMode = RegressMode.EXIT
    thresholds: tuple[Threshold, ...] = ()
    find_fix: bool = False
    retries: int = 0
    argv: list[str] = field(default_factory=list)
    #: Nightly channels (envbisect.nightly): the build variant to use, nightlies only,
    #: the window between two releases, and packages the bisected one replaces in the
    #: recipe's dependencies (tensorflow when bisecting tf-nightly).
    variant: str | None = None
    nightly: bool = False
    window: object | None = None
    replaces: tuple[str, ...] = ()
    #: How the recipe's other dependencies are chosen for each candidate (--deps).
    deps: DepsMode = DepsMode.LATEST
    #: ``--metric NAME --samples auto``: sampled, statistical verdicts (envbisect.sampling).
    sampling: SamplingPlan | None = None
    #: ``--diverge-from``: judge candidates by their outputs against this release's.
    diverge_from: str | None = None
    tolerance: Tolerance = Tolerance()
    signature: Signature | None = None

    @property
    def judging(self) -> Judging:
        return Judging(self.timeout, self.regress, self.thresholds, self.retries, self.sampling,
                       tolerance=self.tolerance, signature=self.signature)


def parse_with(items: tuple[str, ...] | list[str]) -> list[Requirement]:
    """``--with PKG==VER`` (or ``--with PKG``) values as requirements."""
    out = []
    for item in items:
        try:
            out.append(Requirement(item))
        except InvalidRequirement as exc:
            raise ConfigError(f"--with {item!r} is not a requirement ({first_line(exc)}); "
                              "use e.g. --with numpy==1.26.4") from exc
    return out


def exact_pins(pins: list[Requirement]) -> list[str]:
    """Names of the ``--with`` pins that fix one version (``==``/``===``)."""
    return [p.name for p in pins if any(s.operator in ("==", "===") for s in p.specifier)]


def exact_names(requirements: list[str]) -> list[str]:
    """Names of the requirement strings that pin one version (``name==1.2``)."""
    out = []
    for text in requirements:
        try:
            out += exact_pins([Requirement(text)])
        except InvalidRequirement:
            continue
    return out


def requirements_for(recipe: Recipe, pins: list[Requirement], package: str | None = None,
                     version: str | None = None, drop: tuple[str, ...] = ()) -> list[str]:
    """The recipe's dependencies with ``package==version`` and the ``--with`` pins replacing
    the recipe's own requirement for those packages (and for those in ``drop``)."""
    pinned = {canonicalize_name(p.name) for p in pins} | {canonicalize_name(d) for d in drop}
    if package:
        pinned.add(canonicalize_name(package))
    reqs = [str(d) for d in recipe.dependencies if canonicalize_name(d.name) not in pinned]
    if package and version:
        reqs.append(f"{package}=={version}")
    reqs += [str(p) for p in pins]
    return reqs


def signature(payload: dict) -> str:
    """A short hash identifying "the same question asked again" (resume by signature)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def as_version(text: str, flag: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion as exc:
        raise ConfigError(f"{flag} {text!r} is not a version; use a release number such as 2.16.1") from exc
