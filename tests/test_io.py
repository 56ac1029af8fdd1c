"""cl_core.io: the one definition of canonical JSON, content hashes and atomic file writes.

Every content id (artifact versions, store fingerprints, the flows' stage ids) is hashed from
:func:`canonical_json`, so its bytes are pinned here: a change would silently change every
version a user has published.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from cl_core.io import (
    atomic_write_bytes,
    canonical_json,
    content_hash,
    readable_json,
    sha256_hex,
)
from cl_core.store.create import content_fingerprint


@dataclasses.dataclass(frozen=True)
class _Config:
    k: int = 5
    scale: float = 0.5


DOCUMENT = {
    "b": [np.int64(3), np.float32(0.25), np.arange(2)],
    "a": {"path": Path("/data/x"), "config": _Config(), "ids": {3, 1}},
    "text": "é",
}


def test_canonical_json_bytes_are_pinned() -> None:
    expected = (
        '{"a":{"config":{"k":5,"scale":0.5},"ids":[1,3],"path":"/data/x"},'
        '"b":[3,0.25,[0,1]],"text":"\\u00e9"}'
    )
    assert canonical_json(DOCUMENT) == expected
    assert content_hash(DOCUMENT, 12) == sha256_hex(expected)[:12] == "54491951a784"


def test_store_fingerprint_is_unchanged_by_the_move() -> None:
    meta = {
        "schema": 1, "n_rows": 10, "dim": 4, "dtype": "float16", "dataset_fingerprint": "d",
        "model_id": "m", "layer": None, "code_version": "x", "fingerprint": "z", "u": "é",
        "chunk_rows": 4,
    }  # fmt: skip
    assert content_fingerprint(meta) == "c7575cc0918ef2de"  # as computed before cl_core.io


def test_nan_is_refused_unless_asked_for() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        canonical_json({"x": float("nan")})
    assert canonical_json({"x": float("nan")}, allow_nan=True) == '{"x":NaN}'
    with pytest.raises(ValueError):
        readable_json([float("inf")])
    with pytest.raises(TypeError, match="object is not JSON-serialisable"):
        canonical_json({"x": object()})
    assert readable_json({"b": 1, "a": [1]}) == b'{\n  "a": [\n    1\n  ],\n  "b": 1\n}\n'


@pytest.mark.parametrize("durable", [False, True])
def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(
    tmp_path: Path, durable: bool
) -> None:
    target = tmp_path / "deep" / "er" / "file.json"
    atomic_write_bytes(target, b"old", durable=durable)
    atomic_write_bytes(target, b"new", durable=durable)
    assert target.read_bytes() == b"new"
    assert sorted(os.listdir(target.parent)) == ["file.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"old")

    def killed(*args: object) -> None:
        raise KeyboardInterrupt("killed between the write and the rename")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["file.bin"]


def test_a_named_temporary_is_used_and_renamed(tmp_path: Path) -> None:
    target = tmp_path / "latest"
    atomic_write_bytes(target, b"v1\n", durable=True, temp_name=".latest-x@host@1@ab")
    assert target.read_bytes() == b"v1\n" and sorted(os.listdir(tmp_path)) == ["latest"]
