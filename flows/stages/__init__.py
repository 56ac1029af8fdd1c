"""The stage flows, one module each: ``embed`` (dataset -> sharded Zarr store, or an existing
``zarr:`` store), ``cluster`` (the k sweep fanned out over the sweep's task runner, then the fit
and assignment) and ``curriculum`` (difficulty, schedule, report and the published version).

Nothing is imported here: import the stage modules themselves
(``from flows.stages.cluster import cluster_flow``).
"""
