"""Ready-made models: the search CTR network and Wide & Deep (from :mod:`jaxembed.nn.ctr`),
and the zoo built from a schema, by name (:mod:`jaxembed.models.registry`).

The names load on first use, so that ``jaxembed.models.registry`` (the list of model names
the command line shows) does not start JAX.
"""

_FROM_CTR = ("DEFAULT_DOMAINS", "BehaviorNetwork", "SearchCTR", "StatsTower", "WideAndDeep",
             "WideLinear", "sigmoid_cross_entropy")


def __getattr__(name: str):
    if name in _FROM_CTR:
        from jaxembed.nn import ctr

        value = getattr(ctr, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jaxembed.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_FROM_CTR])


__all__ = list(_FROM_CTR)
