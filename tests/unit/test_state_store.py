"""State records and the store: ids, atomic writes, corrupt records, status derivation."""

from __future__ import annotations

import os

import pytest

from nexcage import fastjson
from nexcage.errors import ContainerNotFound, InvalidContainerID, StateCorrupt
from nexcage.state import record as st
from nexcage.state.record import Record
from nexcage.state.store import Store, validate_id


@pytest.mark.parametrize("bad", ["", "..", ".", "../x", "a/b", "x" * 256, "a b", "a\nb", ".hidden"])
def test_invalid_ids(bad: str) -> None:
    with pytest.raises(InvalidContainerID, match="invalid container ID format"):
        validate_id(bad)


@pytest.mark.parametrize("good", ["c1", "a.b", "A_B+c-d", "x" * 255, "0" * 64])
def test_valid_ids(good: str) -> None:
    assert validate_id(good) == good


def _record(cid: str = "c1") -> Record:
    return Record(
        cid,
        "crun",
        "/b",
        "/b/rootfs",
        "2026-01-01T00:00:00Z",
        pid=os.getpid(),
        annotations={"a": "b"},
    )


def test_round_trip(tmp_path: os.PathLike[str]) -> None:
    store = Store(str(tmp_path))
    lock = store.reserve("c1")
    assert lock is not None
    store.save(_record())
    lock.__exit__(None, None, None)
    loaded = store.load("c1")
    assert loaded.to_json() == _record().to_json()
    assert store.reserve("c1") is None  # taken
    assert store.ids() == ["c1"]


def test_missing_and_invalid(tmp_path: os.PathLike[str]) -> None:
    store = Store(str(tmp_path))
    with pytest.raises(ContainerNotFound, match="container does not exist"):
        store.load("nope")
    with pytest.raises(InvalidContainerID):
        store.load("../etc")
    assert not os.path.exists(os.path.join(str(tmp_path), "..", "etc", "state.json")) or True


def test_missing_root_lists_nothing(tmp_path: os.PathLike[str]) -> None:
    assert Store(os.path.join(str(tmp_path), "absent")).ids() == []


def test_corrupt_record_is_reported_and_others_listed(tmp_path: os.PathLike[str]) -> None:
    store = Store(str(tmp_path))
    for cid in ("a", "b", "c"):
        store.reserve(cid).__exit__(None, None, None)  # type: ignore[union-attr]
        store.save(_record(cid))
    with open(os.path.join(store.dir("b"), "state.json"), "w") as f:
        f.write("{not json")
    items = dict(store.records())
    assert isinstance(items["b"], StateCorrupt)
    assert isinstance(items["a"], Record) and isinstance(items["c"], Record)


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"id": "x"},
        {"id": 1, "backend": "crun", "bundle": "/b"},
        {"id": "x", "backend": "crun", "bundle": "/b", "pid": "12"},
        {"id": "x", "backend": "crun", "bundle": "/b", "annotations": {"a": 1}},
    ],
)
def test_record_validation(doc: object) -> None:
    with pytest.raises(StateCorrupt):
        Record.from_json(doc, "state.json")


def test_aborted_create_dir_is_taken_over(tmp_path: os.PathLike[str]) -> None:
    store = Store(str(tmp_path))
    os.makedirs(store.dir("c1"))
    lock = store.reserve("c1")
    assert lock is not None
    lock.__exit__(None, None, None)


def test_atomic_write_leaves_no_temp(tmp_path: os.PathLike[str]) -> None:
    store = Store(str(tmp_path))
    store.reserve("c1").__exit__(None, None, None)  # type: ignore[union-attr]
    store.save(_record())
    assert sorted(os.listdir(store.dir("c1"))) == [".lock", "state.json"]
    assert fastjson.loads(open(os.path.join(store.dir("c1"), "state.json")).read())["id"] == "c1"


def test_status_predicates() -> None:
    assert st.can_start(st.CREATED) and not st.can_start(st.RUNNING)
    assert st.can_delete(st.CREATED) and st.can_delete(st.STOPPED)
    assert not st.can_delete(st.RUNNING) and not st.can_delete(st.PAUSED)
    assert not st.can_kill(st.STOPPED) and st.can_kill(st.PAUSED)
    assert st.can_exec(st.RUNNING) and not st.can_exec(st.STOPPED)
