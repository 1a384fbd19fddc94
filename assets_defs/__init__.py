"""The Dagster layer of cinepipe: assets, partitions, resources, checks, sensors and the ``Definitions``.

Thin by design: every algorithm lives in the ``cinepipe`` library; this package wires it into Dagster.
"""
