"""The `compact_manifest` flow: fold every cube's manifest segments into one file."""

from __future__ import annotations

from prefect import flow, get_run_logger

from darts_aux.cubes import compact_all

from .cubes import resolve_data_dir


def _flow_run_name() -> str:
    from prefect.runtime import flow_run

    return f"compact-manifest {resolve_data_dir(flow_run.parameters.get('data_dir')).name}"


@flow(name="compact_manifest", flow_run_name=_flow_run_name)
def compact_manifest(data_dir: str | None = None) -> dict[str, int]:
    """Fold each cube's manifest segments into one compacted file (under the cube's commit lock).

    Returns how many files were folded per cube (0: already one file).
    """
    logger = get_run_logger()
    directory = resolve_data_dir(data_dir)
    folded = dict(compact_all(directory))
    for key, count in folded.items():
        if count:
            logger.info("%s: folded %d manifest files into one GeoParquet file", key, count)
        else:
            logger.info("%s: the manifest is one file already, nothing to fold", key)
    return folded
