"""Entry point of the repository for `darts_aux.flows.download`."""

from darts_aux.flows.download import download_chunks

__all__ = ["download_chunks"]
