"""Prefect 3 flows, thin tasks, parameter models and the ``cl-curriculum`` CLI.

Importing this package changes nothing: the environment defaults of :mod:`flows.prefect_env`
are applied explicitly when a run starts (the CLI does it before it imports Prefect).
"""
