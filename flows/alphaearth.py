"""Entry point of the repository for `darts_aux.flows.alphaearth`."""

from darts_aux.flows.alphaearth import fill_alphaearth

__all__ = ["fill_alphaearth"]
