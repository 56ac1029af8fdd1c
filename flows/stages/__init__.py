"""The stage flows, one module each, and what they share.

==================  ============================================================================
``embed``           ``embed`` flow: dataset -> sharded Zarr store (or an existing ``zarr:`` store)
``cluster``         ``cluster`` flow: the k sweep fanned out over the sweep's task runner, then the
                    fit and assignment (:func:`cl_core.cluster.cluster_embeddings`)
``curriculum``      ``curriculum`` flow: difficulty, schedule, report and the published version
``done``            the on-disk truth a cache record must agree with (completion predicates)
``publication``     the publish task's plan, inputs, ``publish_curriculum`` options and report
``tables``          the Prefect UI tables and artifact keys
==================  ============================================================================

Nothing is imported here, so that :mod:`flows.tasks` can use ``done`` without a cycle; import
the stage modules themselves (``from flows.stages.cluster import cluster_flow``).
"""
