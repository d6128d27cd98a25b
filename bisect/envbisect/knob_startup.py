"""The start-up hook ``bisect narrow`` puts in front of a recipe: a ``sitecustomize``.

This file is not imported by envbisect. :func:`envbisect.knobs.install_startup` copies it,
as ``sitecustomize.py``, into a directory of its own inside one probe's scratch directory
and puts that directory on the recipe process's ``PYTHONPATH`` only (never into the
environment under test, never on envbisect's own path). Python imports it at start-up;
it reads the knob settings from ``ENVBISECT_KNOBS`` (JSON) and applies each one *lazily*:
an import hook waits for the module a setting belongs to (``tensorflow``,
``torch._inductor.config``, a package's own settings module) and applies the setting right
after that module has executed, before the code that imported it continues. A recipe that
never imports the framework is untouched, and nothing is imported on its behalf.

It must run on any Python the recipes use (3.8+) and import nothing but the standard
library. A setting that cannot be applied (an option this framework version does not have)
is reported on stderr and skipped: the probe then shows the unchanged result.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

_PENDING = {}  # module name -> [setting, ...]


def _resolve(root, dotted):
    """``root`` then each attribute of ``dotted``, importing submodules on the way."""
    obj, name = root, getattr(root, "__name__", "")
    for part in dotted.split("."):
        name = "%s.%s" % (name, part) if name else part
        if not hasattr(obj, part) and hasattr(obj, "__path__"):
            importlib.import_module(name)
        obj = getattr(obj, part)
    return obj


def hide_gpus(tf, value):
    """A CPU-only TensorFlow run: every GPU (CUDA or Metal) hidden before first use."""
    if value:
        tf.config.set_visible_devices([], "GPU")


def force_compile_backend(torch, backend):
    """Every ``torch.compile`` call uses ``backend`` (its mode and options are dropped,
    since they belong to the backend they were written for)."""
    original = torch.compile

    def compile(model=None, *args, **kwargs):
        kwargs["backend"] = backend
        kwargs.pop("mode", None)
        kwargs.pop("options", None)
        if model is None:
            return lambda fn: original(fn, *args, **kwargs)
        return original(model, *args, **kwargs)

    compile.__wrapped__ = original
    torch.compile = compile


_HELPERS = {"hide_gpus": hide_gpus, "force_compile_backend": force_compile_backend}


def apply(module, setting):
    """Apply one setting to the freshly imported ``module``."""
    action, target, value = setting["action"], setting["target"], setting["value"]
    if action == "set":
        owner, _, attr = target.rpartition(".")
        setattr(_resolve(module, owner) if owner else module, attr, value)
    elif action == "call":
        _resolve(module, target)(value)
    elif action == "options":
        _resolve(module, target)({setting["key"]: value})
    elif action == "helper":
        _HELPERS[target](module, value)
    else:
        raise ValueError("unknown action %r" % action)


def _apply_all(module):
    for setting in _PENDING.pop(module.__name__, []):
        try:
            apply(module, setting)
        except Exception as exc:  # an option this version lacks: say so, run unchanged
            sys.stderr.write("envbisect: knob %s could not be applied: %s: %s\n"
                             % (setting["knob"], type(exc).__name__, exc))


class _Finder:
    """A meta-path finder that only wraps the loader of modules with pending settings."""

    def find_spec(self, name, path=None, target=None):
        if name not in _PENDING:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module):
            execute(module)
            _apply_all(module)

        try:
            loader.exec_module = exec_module  # this module's own loader instance only
        except (AttributeError, TypeError):
            return spec
        return spec


def _install():
    try:
        plan = json.loads(os.environ.get("ENVBISECT_KNOBS") or "{}")
    except ValueError:
        sys.stderr.write("envbisect: ENVBISECT_KNOBS is not JSON; no knob applied\n")
        return
    for setting in plan.get("apply", []):
        _PENDING.setdefault(setting["module"], []).append(setting)
    for name in list(_PENDING):
        if name in sys.modules:  # imported before us (rare): apply at once
            _apply_all(sys.modules[name])
    if _PENDING:
        sys.meta_path.insert(0, _Finder())


def _chain():
    """Run the ``sitecustomize`` this one shadows (a distribution's or the system's)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if entry and os.path.abspath(entry) != here:
            candidate = os.path.join(entry, "sitecustomize.py")
            if os.path.isfile(candidate):
                with open(candidate, "rb") as fh:
                    code = compile(fh.read(), candidate, "exec")
                exec(code, {"__name__": "sitecustomize", "__file__": candidate})
                return


_install()
_chain()
