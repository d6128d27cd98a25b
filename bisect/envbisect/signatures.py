"""Failure signatures: a bad outcome counts only when it fails the way the bug fails.

Pure (no I/O). ``signature = "regex"`` (or ``--signature``) is searched in the recipe's
stdout and stderr tails; ``signature-exception = "ValueError"`` names the exception whose
traceback marks the regression. A probe judged BAD whose output does not carry the
signature is untestable ("failed, but not with the signature"): a renamed API the recipe
also touches, or an out-of-memory kill, is not the regression being searched for.

``signature-exception`` also turns an uncaught exception of that class (which the runner
records as an error, see :data:`envbisect.runner.EXIT_UNCAUGHT`) into BAD: naming the
exception says that crash *is* the failure. The tails are stored with every probe, so a
signature re-judges stored runs without running anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from envbisect.errors import ConfigError
from envbisect.policy import Judgement, Outcome
from envbisect.search import Verdict

NOT_SIGNATURE = "failed, but not with the signature"


def check_regex(value: str) -> str:
    """``value`` when it compiles as a regular expression; ValueError (one sentence) otherwise."""
    try:
        return re.compile(value).pattern
    except re.error as exc:
        raise ValueError(f"{value!r} is not a regular expression ({exc}); write e.g. \"shape mismatch\"") from None


def check_exception(value: str) -> str:
    """``value`` when it reads as an exception class name (``ValueError``, ``numpy.linalg.LinAlgError``)."""
    if re.fullmatch(r"[A-Za-z_][\w.]*", value):
        return value
    raise ValueError(f"{value!r} is not an exception class name; write e.g. \"ValueError\"")


@dataclass(frozen=True)
class Signature:
    """A regular expression and/or an exception class name (either may be None)."""

    pattern: str | None = None
    exception: str | None = None

    def __post_init__(self) -> None:
        try:
            for value, check in ((self.pattern, check_regex), (self.exception, check_exception)):
                if value is not None:
                    check(value)
        except ValueError as exc:
            raise ConfigError(f"signature: {exc}") from None

    def __bool__(self) -> bool:
        return bool(self.pattern or self.exception)

    def as_dict(self) -> dict:
        return {"pattern": self.pattern, "exception": self.exception, "text": str(self)}

    def __str__(self) -> str:
        parts = [f"/{self.pattern}/"] if self.pattern else []
        return " and ".join(parts + ([f"uncaught {self.exception}"] if self.exception else []))

    def _raised(self, stderr: str) -> bool:
        """Whether the traceback in ``stderr`` ends with this exception (module-qualified or not)."""
        name = re.escape(self.exception or "")
        return re.search(rf"(?m)^(?:[\w.]+\.)?{name}(?::|$)", stderr) is not None

    def matches(self, stdout: str, stderr: str) -> bool:
        """Whether the output carries every part of the signature that is set."""
        if self.pattern and not re.search(self.pattern, f"{stdout}\n{stderr}", re.MULTILINE):
            return False
        return not self.exception or self._raised(stderr)

    def apply(self, judgement: Judgement, raw: Mapping[str, Any]) -> Judgement:
        """Re-judge under the signature; the details say whether it matched."""
        stdout, stderr = raw.get("stdout_tail") or "", raw.get("stderr_tail") or ""
        matched = self.matches(stdout, stderr)
        details = dict(judgement.details or {}, signature_matched=matched)
        if self.exception and judgement.outcome is Outcome.ERROR and matched and \
                judgement.reason.startswith("uncaught"):
            return Judgement(Outcome.BAD, Verdict.BAD, f"{judgement.reason} (the signature)", details)
        if judgement.verdict is Verdict.BAD and not matched:
            return Judgement(Outcome.SKIP, Verdict.UNTESTABLE, f"{NOT_SIGNATURE} {self} ({judgement.reason})",
                             details)
        return replace(judgement, details=details)
