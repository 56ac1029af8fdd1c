"""``latest`` is moved atomically and only onto published versions; killed publishes are cleaned up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import cl_core.artifacts as artifacts
import cl_core.artifacts.latest as latest
from cl_core.artifacts import (
    ArtifactIntegrityError,
    latest_version,
    point_latest,
    publish_curriculum,
    remove_stale_temporaries,
)

ROOT = Path(__file__).resolve().parents[1]


def _publish(root: Path, seed: int, name: str = "toy") -> Path:
    scores = np.random.default_rng(seed).random(50)
    return publish_curriculum(root, name, scores, warmup_iterations=10)


# ---------------------------------------------------------------------------- point_latest


def test_point_latest_moves_the_pointer(tmp_path: Path) -> None:
    first, second = _publish(tmp_path, 1), _publish(tmp_path, 2)
    assert latest_version(tmp_path, "toy") == second
    assert point_latest(tmp_path, "toy", first.name) == first
    assert latest_version(tmp_path, "toy") == first
    assert (tmp_path / "toy" / "latest").read_text() == first.name + "\n"
    assert sorted(p.name for p in (tmp_path / "toy").iterdir() if p.name.startswith(".")) == []


def test_point_latest_refuses_what_is_not_a_published_version(tmp_path: Path) -> None:
    good = _publish(tmp_path, 1)
    half = tmp_path / "toy" / "abcdef012345"
    half.mkdir()  # an interrupted publish: files but no manifest
    (half / "difficulty.npy").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"has no manifest\.json, so that version is not"):
        point_latest(tmp_path, "toy", half.name)
    with pytest.raises(FileNotFoundError, match="not published"):
        point_latest(tmp_path, "toy", "000000000000")

    broken = tmp_path / "toy" / "bbbbbbbbbbbb"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactIntegrityError, match="not valid JSON"):
        point_latest(tmp_path, "toy", broken.name)

    copied = tmp_path / "toy" / "cccccccccccc"
    copied.mkdir()
    (copied / "manifest.json").write_bytes((good / "manifest.json").read_bytes())
    with pytest.raises(ArtifactIntegrityError, match="records name 'toy' and version"):
        point_latest(tmp_path, "toy", copied.name)

    for bad in ("../toy", ".tmp-x", "latest", ""):
        with pytest.raises(ValueError, match="is not a version name"):
            point_latest(tmp_path, "toy", bad)
    assert latest_version(tmp_path, "toy") == good  # nothing above moved it


def test_concurrent_reader_never_sees_a_partial_pointer(tmp_path: Path) -> None:
    """A reader hammering ``latest`` while a writer flips it sees only whole version names."""
    versions = {_publish(tmp_path, 1).name, _publish(tmp_path, 2).name}
    pointer = tmp_path / "toy" / "latest"
    stop = threading.Event()
    seen: set[str] = set()
    errors: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add(pointer.read_text())
                seen.add(latest_version(tmp_path, "toy").name + "\n")
            except BaseException as error:  # any failure is the finding
                errors.append(error)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        names = sorted(versions)
        for flip in range(400):
            point_latest(tmp_path, "toy", names[flip % 2])
    finally:
        stop.set()
        reader.join()
    assert not errors, errors[:1]
    assert seen <= {name + "\n" for name in versions}
    assert len(seen) == 2  # the reader really saw both states


# ---------------------------------------------------------------------------- leftovers


_KILLED_PUBLISH = """
import sys, time
import numpy as np
import cl_core.artifacts as artifacts
import cl_core.artifacts.publish as publishing

original = publishing.write_file

def slow_write(directory, item):
    entry = original(directory, item)
    print("WROTE", item.name, flush=True)
    time.sleep(120)  # killed here, with the temp directory half written
    return entry

publishing.write_file = slow_write
artifacts.publish_curriculum(sys.argv[1], "toy", np.linspace(0, 1, 50), warmup_iterations=10)
"""


def _temporaries(root: Path, name: str = "toy") -> list[str]:
    return sorted(path.name for path in (root / name).iterdir() if path.name.startswith("."))


@pytest.mark.integration
def test_killed_publish_is_cleaned_up_by_the_next_publish(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_PUBLISH, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("WROTE")
        leftovers = _temporaries(tmp_path)
        assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")
        assert f"@{process.pid}@" in leftovers[0]
        # While its writer lives, another publish leaves it alone.
        _publish(tmp_path, 7)
        assert _temporaries(tmp_path) == leftovers
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()  # type: ignore[union-attr]

    version = _publish(tmp_path, 8)
    assert _temporaries(tmp_path) == []
    assert (version / "manifest.json").is_file()
    assert len(artifacts.list_versions(tmp_path, "toy")) == 2


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_only_temporaries_of_gone_writers_are_removed(tmp_path: Path) -> None:
    _publish(tmp_path, 1)
    name_dir = tmp_path / "toy"
    host = latest.host_tag()
    dead, alive = _dead_pid(), os.getppid()
    made = {
        "dead_tmp": name_dir / f".tmp-0123456789ab@{host}@{dead}@aa11",
        "dead_trash": name_dir / f".trash-0123456789ab@{host}@{dead}@bb22",
        "dead_pointer": name_dir / f".latest-@{host}@{dead}@cc33",
        "live_tmp": name_dir / f".tmp-0123456789ab@{host}@{alive}@dd44",
        "own_tmp": name_dir / f".tmp-0123456789ab@{host}@{os.getpid()}@ee55",
        "other_host": name_dir / f".tmp-0123456789ab@another-host.example@{dead}@ff66",
        "legacy_new": name_dir / ".tmp-0123456789ab-0a0b0c0d0e0f",
        "legacy_old": name_dir / ".tmp-0123456789ab-1a1b1c1d1e1f",
        "not_ours": name_dir / ".hidden-notes",
    }
    for key, path in made.items():
        if key == "dead_pointer":
            path.write_text("0123456789ab\n")
        else:
            path.mkdir()
            (path / "difficulty.npy").write_bytes(b"partial")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(made["legacy_old"], (day_ago, day_ago))

    removed = remove_stale_temporaries(tmp_path, "toy")

    gone = {"dead_tmp", "dead_trash", "dead_pointer", "legacy_old"}
    assert sorted(path.name for path in removed) == sorted(made[key].name for key in gone)
    for key, path in made.items():
        assert path.exists() == (key not in gone), key
    assert latest_version(tmp_path, "toy").is_dir()  # the published version is untouched
    assert remove_stale_temporaries(tmp_path, "missing") == []


def test_temporary_names_record_the_writer(tmp_path: Path) -> None:
    name = latest.temp_name("tmp", "0123456789ab")
    match = latest.TEMP_PATTERN.match(name)
    assert match is not None
    assert match["pid"] == str(os.getpid()) and match["host"] == latest.host_tag()
    assert match["label"] == "0123456789ab"


def test_publish_leaves_no_temporaries(tmp_path: Path) -> None:
    version = _publish(tmp_path, 3)
    assert _temporaries(tmp_path) == []
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["version"] == version.name


# ---------------------------------------------------------------------------- damaged versions


def test_replace_damaged_publishes_a_damaged_version_again(tmp_path: Path) -> None:
    version = _publish(tmp_path, 4)
    target = version / "difficulty.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.chmod(0o644)
    target.write_bytes(bytes(data))
    scores = np.random.default_rng(4).random(50)

    with pytest.raises(ArtifactIntegrityError, match="pass replace_damaged=True"):
        publish_curriculum(tmp_path, "toy", scores, warmup_iterations=10)
    again = publish_curriculum(tmp_path, "toy", scores, warmup_iterations=10, replace_damaged=True)

    assert again == version
    artifacts.verify_artifact(again)
    assert latest_version(tmp_path, "toy") == again
    assert _temporaries(tmp_path) == []
    with pytest.raises(TypeError, match="replace_damaged must be True or False"):
        publish_curriculum(tmp_path, "toy", scores, replace_damaged="yes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- concurrency

_SAME_PUBLISH = """
import sys, time
import numpy as np
from cl_core.artifacts import publish_curriculum

start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))  # both processes publish at the same moment
path = publish_curriculum(sys.argv[1], "toy", np.linspace(0, 1, 2000), warmup_iterations=10)
print(path.name)
"""


@pytest.mark.integration
def test_two_processes_publishing_the_same_version_both_succeed(tmp_path: Path) -> None:
    start = time.time() + 3.0  # after both interpreters have imported numpy and cl_core
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _SAME_PUBLISH, str(tmp_path), str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err for _, err in outputs]
    versions = {out.strip() for out, _ in outputs}
    assert len(versions) == 1
    version = versions.pop()
    artifacts.verify_artifact(tmp_path / "toy" / version)
    assert latest_version(tmp_path, "toy").name == version
    assert _temporaries(tmp_path) == []
    assert [path.name for path in artifacts.list_versions(tmp_path, "toy")] == [version]
