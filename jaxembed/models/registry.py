"""Models by name: ``jaxembed fit --model NAME`` and ``je.fit(..., model=NAME)``.

Each entry is ``"module:Class"``; the class is built as ``Class(inputs, rngs=..., **hyper)``
from a :class:`~jaxembed.models.inputs.ModelInputs` and the hyperparameters of the schema's
``[model]`` table or the command line. Modules are imported on first use.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from jaxembed.models.inputs import ModelInputs

if TYPE_CHECKING:
    from flax import nnx

MODELS: dict[str, str] = {
    "autoint": "jaxembed.models.autoint:AutoInt",
    "dcnv2": "jaxembed.models.dcnv2:DCNv2",
    "deepfm": "jaxembed.models.deepfm:DeepFM",
    "din": "jaxembed.models.din:DIN",
    "fm": "jaxembed.models.fm:FM",
    "lr": "jaxembed.models.lr:LR",
    "search_ctr": "jaxembed.models.search_ctr:SearchCTR",
    "wide_deep": "jaxembed.models.wide_deep:WideDeep",
    "xdeepfm": "jaxembed.models.xdeepfm:XDeepFM",
}


def available() -> tuple[str, ...]:
    """The model names, sorted."""
    return tuple(sorted(MODELS))


def model_class(name: str) -> type:
    """The class registered as ``name``; an unknown name lists the available ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")
    module, _, attr = MODELS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def hyperparameters(name: str) -> dict[str, Any]:
    """The keyword hyperparameters of model ``name`` with their defaults."""
    signature = inspect.signature(model_class(name).__init__)
    return {p.name: p.default for p in signature.parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.name != "rngs"}


def build(name: str, inputs: ModelInputs, *, seed: int = 0, abstract: bool = False,
          **hyper: Any) -> nnx.Module:
    """``Class(inputs, rngs=nnx.Rngs(seed), **hyper)``; an unknown hyperparameter is an error
    that lists the accepted ones. ``abstract``: the model's structure with
    ``jax.ShapeDtypeStruct`` leaves (``nnx.eval_shape``: no initializer runs), for a model
    whose every parameter is then restored from a checkpoint."""
    cls = model_class(name)
    accepted = hyperparameters(name)
    unknown = sorted(set(hyper) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} has no hyperparameter {unknown[0]!r}; it takes: "
                         f"{', '.join(sorted(accepted)) or 'none'}")
    from flax import nnx

    if abstract:
        return nnx.eval_shape(lambda: cls(inputs, rngs=nnx.Rngs(seed), **hyper))
    return cls(inputs, rngs=nnx.Rngs(seed), **hyper)
