"""Partitions: one dynamic partition per film (key = the film's content-hash id)."""

from dagster import DynamicPartitionsDefinition

FILMS_PARTITION = "films"
films_partitions = DynamicPartitionsDefinition(name=FILMS_PARTITION)
