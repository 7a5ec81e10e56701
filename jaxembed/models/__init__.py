"""Ready-made models: the search CTR network and Wide & Deep (from :mod:`jaxembed.nn.ctr`)."""

from jaxembed.nn.ctr import (
    DEFAULT_DOMAINS,
    BehaviorNetwork,
    SearchCTR,
    StatsTower,
    WideAndDeep,
    WideLinear,
    sigmoid_cross_entropy,
)

__all__ = [
    "DEFAULT_DOMAINS",
    "BehaviorNetwork",
    "SearchCTR",
    "StatsTower",
    "WideAndDeep",
    "WideLinear",
    "sigmoid_cross_entropy",
]
