"""Entry point of the repository for `darts_aux.flows.arcticdem`."""

from darts_aux.flows.arcticdem import fill_arcticdem

__all__ = ["fill_arcticdem"]
