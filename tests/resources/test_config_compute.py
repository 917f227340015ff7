"""Configuration from environment variables, and the compute device."""
from __future__ import annotations

import pytest

from resources.compute import cuda_available, resolve_device
from resources.config import load_config


def test_embedded_defaults_live_under_aooct_home(tmp_path):
    cfg = load_config({"AOOCT_HOME": str(tmp_path)})
    assert cfg.db_url == f"sqlite:///{tmp_path / 'aooct.db'}"
    assert cfg.object_store == str(tmp_path / "objects")
    assert cfg.drop == str(tmp_path / "drop")
    assert cfg.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert cfg.dagster_home == tmp_path / "dagster" and cfg.device == "cpu"


def test_every_endpoint_comes_from_the_environment(tmp_path):
    cfg = load_config({
        "AOOCT_HOME": str(tmp_path), "AOOCT_DB_URL": "postgresql+psycopg2://u@db/aooct",
        "AOOCT_OBJECT_STORE": "s3://bucket/prod", "AWS_ENDPOINT_URL": "http://minio:9000",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000", "AOOCT_DROP": "s3://bucket/drop",
        "AOOCT_DEVICE": "cuda",
    })
    assert (cfg.db_url, cfg.object_store, cfg.s3_endpoint_url, cfg.mlflow_tracking_uri, cfg.drop,
            cfg.device) == ("postgresql+psycopg2://u@db/aooct", "s3://bucket/prod",
                            "http://minio:9000", "http://mlflow:5000", "s3://bucket/drop", "cuda")
    assert load_config({"AOOCT_S3_ENDPOINT_URL": "http://a", "AWS_ENDPOINT_URL": "http://b"}
                       ).s3_endpoint_url == "http://a"
    with pytest.raises(ValueError, match="AOOCT_DEVICE"):
        load_config({"AOOCT_DEVICE": "tpu"})


def test_resolve_device():
    assert resolve_device("cpu") == "cpu" and resolve_device(" CPU ") == "cpu"
    for bad in ("gpu", "cuda:x", "cpu:0", 0):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)
    if cuda_available():
        assert resolve_device("cuda") == "cuda"
    else:
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_deid_key_file_is_made_once_owner_only_and_an_env_key_is_checked(tmp_path):
    import stat

    from resources.config import deid_uid_key

    env = {"AOOCT_HOME": str(tmp_path)}
    key = deid_uid_key(env)
    path = tmp_path / "secrets" / "deid.key"
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert deid_uid_key(env) == key  # the same key on every later call
    assert deid_uid_key({**env, "AOOCT_DEID_KEY": "ab" * 16}) == bytes.fromhex("ab" * 16)
    with pytest.raises(ValueError, match="hexadecimal"):
        deid_uid_key({**env, "AOOCT_DEID_KEY": "not hex"})
    with pytest.raises(ValueError, match="32 hex digits"):
        deid_uid_key({**env, "AOOCT_DEID_KEY": "abcd"})
