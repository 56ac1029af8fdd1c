"""What a stage shows in the Prefect UI besides its logs: keyed tables (latest per name)."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_table_artifact


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only)."""
    text = "-".join(parts).lower()
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-")


def publish_sweep_table(sweep: list[dict[str, Any]], chosen_k: int, name: str) -> None:
    """Davies-Bouldin index and inertia per k, the chosen k marked."""
    create_table_artifact(
        [
            {
                "k": p["k"],
                "davies_bouldin": round(p["davies_bouldin"], 4),
                "inertia": round(p["inertia"], 2),
                "chosen": p["k"] == chosen_k,
            }
            for p in sweep
        ],
        key=artifact_key(name, "k-sweep"),
        description="Davies-Bouldin index (lower is better) and inertia per k",
    )


def publish_clusters_table(clusters: list[dict[str, Any]], name: str) -> None:
    """Per cluster: size, mean distance to the centroid, medoid."""
    create_table_artifact(
        clusters,
        key=artifact_key(name, "clusters"),
        description="Per cluster: size, mean distance to the centroid, medoid (sample index)",
    )
