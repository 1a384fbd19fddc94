"""Column schemas of the tabular assets, for Dagster's catalog (``dagster/column_schema``), from their Arrow schemas."""

import pyarrow as pa
from dagster import TableColumn, TableSchema


def column_schema(schema: pa.Schema) -> TableSchema:
    return TableSchema(columns=[TableColumn(f.name, str(f.type)) for f in schema])
