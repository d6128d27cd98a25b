"""Knobs: framework settings ``bisect narrow`` may flip, and how a probe applies them.

A *knob* is one setting of the code under test with the values to try: an environment
variable (``TF_ENABLE_ONEDNN_OPTS = ["0"]``), or a *start-up* setting applied inside the
recipe's process right after a module is imported (an attribute set, a function called).
:class:`Knob` and :class:`Setting` are plain data defined with the pure search
(:mod:`envbisect.knobsearch`); this module holds the built-in sets and applies settings.
Knobs come from two places:

* the recipe's ``[tool.envbisect.knobs]`` table (:mod:`envbisect.schema_knobs` checks it):
  ``VAR = ["1", "0"]`` or ``name = {env = "VAR", values = [...]}`` for environment
  variables, ``name = {module = "pkg.settings", attribute = "FUSED", values = [false]}``
  for a setting a package reads when it is imported;
* built-in knob sets (:data:`BUILTIN`), used only when their framework is in the
  environment: TensorFlow's Grappler optimizers, XLA auto-clustering, oneDNN, soft device
  placement and a CPU-only run; torch.compile's backend and the inductor / TF32 settings
  that most often change numerics.

How a probe applies settings (:func:`probe_values`): environment knobs become variables of
the recipe's process; start-up knobs become one JSON value, ``ENVBISECT_KNOBS``, which the
``sitecustomize`` of :mod:`envbisect.knob_startup` reads (:func:`install_startup` puts it on
that probe's ``PYTHONPATH`` only). Both are environment values of the probe, so they are
part of its key (:func:`envbisect.probekey.probe_key`): a probe with a knob set is never
mistaken for the plain one. The start-up script's own hash is in the JSON too, so a changed
hook re-runs its probes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from envbisect.knobsearch import Knob, Setting

#: The variable carrying the start-up settings to the recipe's process.
KNOBS_ENV = "ENVBISECT_KNOBS"
STARTUP_SOURCE = Path(__file__).with_name("knob_startup.py")

_TF = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-macos", "tensorflow-intel",
       "intel-tensorflow", "tf-nightly", "tf-nightly-cpu")
_TORCH = ("torch",)
_OPTIONS = "config.optimizer.set_experimental_options"
_GRAPPLER = ("remapping", "arithmetic_optimization", "layout_optimizer", "constant_folding", "shape_optimization",
             "dependency_optimization", "loop_optimization", "function_optimization", "implementation_selector")


def _tf(name: str, text: str, values: tuple, **kw) -> Knob:
    return Knob(f"tf.{name}", text, values, module=None if "env" in kw else "tensorflow", frameworks=_TF,
                **kw)


def _torch(name: str, text: str, values: tuple, module: str, target: str, **kw) -> Knob:
    return Knob(f"torch.{name}", text, values, module=module, target=target, frameworks=_TORCH, **kw)


#: The built-in knob sets (README: "Narrowing to a knob" lists them and how each applies).
BUILTIN: tuple[Knob, ...] = (
    *(_tf(f"grappler.{opt}", f"Grappler's {opt}", (False,), action="options", target=_OPTIONS, key=opt)
      for opt in _GRAPPLER),
    _tf("grappler.all", "Grappler's disable_meta_optimizer (every Grappler pass off)", (True,), action="options", target=_OPTIONS,
        key="disable_meta_optimizer", coarse=True),
    _tf("xla_auto_jit", "XLA auto-clustering (tf.config.optimizer.set_jit)", (False,), action="call",
        target="config.optimizer.set_jit"),
    _tf("onednn", "oneDNN optimizations", ("0",), env="TF_ENABLE_ONEDNN_OPTS"),
    _tf("soft_device_placement", "soft device placement", (False,), action="call",
        target="config.set_soft_device_placement"),
    _tf("cpu_only", "a CPU-only run (GPU and Metal devices hidden)", (True,), action="helper", target="hide_gpus",
        coarse=True),
    _torch("compile.backend", "torch.compile's backend", ("eager", "aot_eager"), "torch", "force_compile_backend",
           action="helper", coarse=True),
    _torch("inductor.fallback_random", "inductor's fallback_random", (True,), "torch._inductor.config",
           "fallback_random"),
    _torch("inductor.emulate_precision_casts", "inductor's emulate_precision_casts", (True,),
           "torch._inductor.config", "emulate_precision_casts"),
    _torch("inductor.layout_optimization", "inductor's layout_optimization", (False,), "torch._inductor.config",
           "layout_optimization"),
    _torch("inductor.comprehensive_padding", "inductor's comprehensive_padding", (False,), "torch._inductor.config",
           "comprehensive_padding"),
    _torch("inductor.max_autotune", "inductor's max_autotune", (True,), "torch._inductor.config", "max_autotune"),
    _torch("cuda.matmul.allow_tf32", "TF32 in CUDA matmuls (torch.backends.cuda.matmul.allow_tf32)", (False,),
           "torch", "backends.cuda.matmul.allow_tf32"),
    _torch("cudnn.allow_tf32", "TF32 in cuDNN (torch.backends.cudnn.allow_tf32)", (False,), "torch",
           "backends.cudnn.allow_tf32"),
)


def recipe_knobs(table: Mapping[str, Mapping]) -> list[Knob]:
    """The recipe's declared knobs, from the checked ``[tool.envbisect.knobs]`` table
    (each entry normalised by :func:`envbisect.schema_knobs.knob_entry`)."""
    out = []
    for name, entry in table.items():
        if entry.get("env"):
            out.append(Knob(name, name, tuple(entry["values"]), env=entry["env"]))
        else:
            module, attribute = entry["module"], entry["attribute"]
            out.append(Knob(name, f"{module}.{attribute}", tuple(entry["values"]), module=module,
                            target=attribute))
    return out


def applicable(knobs: Iterable[Knob], installed: Iterable[str]) -> list[Knob]:
    """The knobs whose framework is installed (recipe knobs always apply)."""
    have = {canonicalize_name(n) for n in installed}
    return [k for k in knobs if not k.frameworks or have & set(k.frameworks)]


def select(knobs: Sequence[Knob], only: Sequence[str]) -> list[Knob]:
    """Knobs whose name starts with one of ``only`` (``--knob tf.grappler``); all when empty."""
    return [k for k in knobs if not only or any(k.name == o or k.name.startswith(o.rstrip(".") + ".") for o in only)]


def startup_hash() -> str:
    return hashlib.sha256(STARTUP_SOURCE.read_bytes()).hexdigest()[:12]


def probe_values(settings: Iterable[Setting], knobs: Mapping[str, Knob]) -> dict[str, str]:
    """The environment values that apply ``settings`` in a probe (see the module docstring)."""
    values: dict[str, str] = {}
    startup = []
    for s in sorted(settings):
        knob = knobs[s.knob]
        if knob.env is not None:
            values[knob.env] = str(s.value)
        else:
            startup.append({"knob": knob.name, "module": knob.module, "action": knob.action, "target": knob.target,
                            "key": knob.key, "value": s.value})
    if startup:
        values[KNOBS_ENV] = json.dumps({"v": startup_hash(), "apply": startup}, sort_keys=True)
    return values


def label(settings: Iterable[Setting], knobs: Mapping[str, Knob]) -> str:
    """A probe label for a set of settings (stable: the run finds its own probes by it)."""
    parts = [f"{s.knob}={json.dumps(s.value)}" for s in sorted(settings)]
    return "knobs: " + (", ".join(parts) if parts else "(none)")


def install_startup(probe_dir: Path, environ: MutableMapping[str, str]) -> None:
    """When ``environ`` carries start-up knobs, put the hook into ``probe_dir/knobs`` as
    ``sitecustomize.py`` and that directory (only) on the recipe's ``PYTHONPATH``."""
    if not environ.get(KNOBS_ENV):
        return
    where = probe_dir / "knobs"
    where.mkdir(exist_ok=True)
    (where / "sitecustomize.py").write_bytes(STARTUP_SOURCE.read_bytes())
    environ["PYTHONPATH"] = str(where)
