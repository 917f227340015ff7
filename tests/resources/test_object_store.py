"""ObjectStore: the same behaviour from the local folder, memory and S3 (moto server) stores."""
from __future__ import annotations

import os

import pytest

from resources.object_store import (TMP_MARKER, LocalObjectStore, S3ObjectStore,
                                    TransientStoreError, make_object_store)
from resources.testing import inject_s3_connection_errors


def test_roundtrip_list_move_delete(any_store, tmp_path):
    s = any_store
    s.put_bytes("cases/a/raw/case.json", b"{}")
    s.put_bytes("cases/a/raw/vol_00.tif", b"x" * 10)
    s.put_bytes("cases/b/report/report.html", b"<html>")
    assert s.get_bytes("cases/a/raw/vol_00.tif") == b"x" * 10
    assert s.exists("cases/a/raw/case.json") and not s.exists("cases/a/nope")
    assert s.list_objects("cases/a/") == {"cases/a/raw/case.json": 2, "cases/a/raw/vol_00.tif": 10}
    assert s.list_keys("cases/") == sorted(s.list_keys("cases/"))
    s.move_prefix("cases/a", "_processed/a")
    assert s.list_keys("cases/a/") == []
    assert s.size("_processed/a/raw/vol_00.tif") == 10
    path = s.get_file("_processed/a/raw/case.json", tmp_path / "out" / "case.json")
    assert path.read_bytes() == b"{}"
    s.delete("cases/b/report/report.html")
    s.delete("cases/b/report/report.html")  # idempotent
    with pytest.raises(FileNotFoundError, match="does not exist"):
        s.get_bytes("cases/b/report/report.html")
    assert "cases/b/report/report.html" in s.uri("cases/b/report/report.html")


def test_delete_prefix_removes_case_json_first_and_only_what_it_is_given(any_store):
    s = any_store
    for name in ("case.json", "vol_00.tif", "vol_01.tif"):
        s.put_bytes(f"drop/c/{name}", b"x")
    s.put_bytes("drop/cc/case.json", b"{}")   # a neighbour sharing the name's start
    assert s.delete_prefix("drop/c", keys=["drop/c/vol_01.tif", "drop/c/case.json"]) == \
        ["drop/c/case.json", "drop/c/vol_01.tif"]
    assert s.list_keys("drop/") == ["drop/c/vol_00.tif", "drop/cc/case.json"]
    assert s.delete_prefix("drop/c") == ["drop/c/vol_00.tif"]
    assert s.list_keys("drop/") == ["drop/cc/case.json"]
    with pytest.raises(ValueError, match="outside"):
        s.delete_prefix("drop/c", keys=["drop/cc/case.json"])


def test_overwrite_replaces_whole_object(any_store):
    any_store.put_bytes("k/v.bin", b"1" * 100)
    any_store.put_bytes("k/v.bin", b"2")
    assert any_store.get_bytes("k/v.bin") == b"2"


@pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "a\\b", "./a"])
def test_bad_keys_rejected(bad, tmp_path):
    with pytest.raises(ValueError, match="key"):
        LocalObjectStore(tmp_path).put_bytes(bad, b"")


def test_local_write_is_atomic_and_temp_files_are_invisible(tmp_path):
    s = LocalObjectStore(tmp_path)
    s.put_bytes("a/b.npy", b"done")
    # A writer killed mid-way leaves only a temp file: never listed, never under the final key.
    (tmp_path / "a" / f".c.npy{TMP_MARKER}123").write_bytes(b"half")
    assert s.list_keys("") == ["a/b.npy"]
    assert not s.exists("a/c.npy")
    assert not [p for p in os.listdir(tmp_path / "a") if TMP_MARKER in p and p.startswith(".b.npy")]


def test_s3_temp_key_is_removed_after_commit(s3_endpoint):
    s = S3ObjectStore("aooct-test", "atomic", endpoint_url=s3_endpoint)
    s.put_bytes("x/y.bin", b"123")
    raw = s.client.list_objects_v2(Bucket="aooct-test", Prefix="atomic/")
    assert [o["Key"] for o in raw["Contents"]] == ["atomic/x/y.bin"]


def test_s3_connection_errors_become_transient_after_botocore_retries(s3_endpoint):
    s = S3ObjectStore("aooct-test", "flaky", endpoint_url=s3_endpoint, max_attempts=2)
    state = inject_s3_connection_errors(s, "PutObject", n=3)
    with pytest.raises(TransientStoreError, match="S3"):
        s.put_bytes("a.bin", b"1")          # attempts 1 and 2 fail → transient
    s.put_bytes("a.bin", b"1")              # attempt 3 fails, botocore's retry succeeds
    assert state["failed"] == 3 and s.get_bytes("a.bin") == b"1"


def test_make_object_store_parses_urls(tmp_path, s3_endpoint):
    assert isinstance(make_object_store(str(tmp_path)), LocalObjectStore)
    s3 = make_object_store("s3://aooct-test/some/prefix", endpoint_url=s3_endpoint)
    assert isinstance(s3, S3ObjectStore) and s3.prefix == "some/prefix"
    s3.put_bytes("k", b"v")
    assert s3.uri("k") == "s3://aooct-test/some/prefix/k"


def test_versions_change_on_same_size_rewrite(any_store):
    """Issue 17 finding 8: a drop rewritten at the same size must look changed to the sensor."""
    any_store.put_bytes("d/v.bin", b"a" * 64)
    before = any_store.list_versions("d/")
    assert set(before) == {"d/v.bin"} and before["d/v.bin"][0] == 64
    any_store.put_bytes("d/v.bin", b"b" * 64)
    after = any_store.list_versions("d/")["d/v.bin"]
    assert after[0] == 64 and after != before["d/v.bin"]
    assert any_store.refused_entries("d/") == {}


def test_local_store_never_follows_links_or_opens_fifos(tmp_path):
    """Issue 17 findings 5 and 7: a symlink pulls no outside file in; a FIFO never blocks a read."""
    root = tmp_path / "drop"
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the drop")
    s = LocalObjectStore(root)
    s.put_bytes("case/case.json", b"{}")
    os.symlink(outside, root / "case" / "vol.tif")
    os.symlink(tmp_path / "gone", root / "case" / "dangling.tif")
    os.mkfifo(root / "case" / "fifo.json")
    os.symlink(tmp_path, root / "linked_dir")
    assert s.list_keys("") == ["case/case.json"]
    refused = s.refused_entries("")
    assert set(refused) == {"case/vol.tif", "case/dangling.tif", "case/fifo.json", "linked_dir"}
    assert "dangling" in refused["case/dangling.tif"] and "FIFO" in refused["case/fifo.json"]
    for key in ("case/vol.tif", "case/fifo.json", "linked_dir/secret.txt"):
        assert not s.exists(key)
        with pytest.raises(FileNotFoundError, match="never follows links"):
            s.get_bytes(key)
    moved = s.move_prefix("case", "_quarantine/case")   # the entries move with the folder, unread
    assert sorted(moved) == ["_quarantine/case/case.json", "_quarantine/case/dangling.tif",
                             "_quarantine/case/fifo.json", "_quarantine/case/vol.tif"]
    assert outside.read_text() == "outside the drop"
