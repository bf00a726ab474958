"""Prefect flows and tasks: thin wrappers that add names, retries and concurrency to darts_aux's fill steps."""
