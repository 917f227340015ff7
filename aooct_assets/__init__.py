"""Dagster definitions of the aooct platform: partitions, assets, checks, sensors, jobs.

Import :mod:`aooct_assets.definitions` for ``defs`` (it reads the environment; see
``resources/config.py``); the sub-modules import without side effects.
"""
