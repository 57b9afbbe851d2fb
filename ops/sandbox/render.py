"""The sandbox's tables: the mapping rows, head-object per seed object, and the log table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from ops.sandbox.provisioning import Provisioned
    from ops.sandbox.seed import SeedObject


def mapping_table(prov: Provisioned) -> Table:
    table = Table(title="Mappings (rows in the mapping table)", title_justify="left")
    for column in ("bucket_name", "prefix", "dual_layer_encryption", "kms_key_arn", "delivery"):
        table.add_column(column, overflow="fold")
    for row in prov.rows:
        delivery = prov.buckets[row.bucket].notification
        table.add_row(row.bucket, row.prefix, str(row.dual_layer), str(row.kms_key_arn), delivery)
    return table


def head_table(title: str, objects: list[SeedObject], after: bool) -> Table:
    """``aws s3api head-object --query "[ServerSideEncryption, SSEKMSKeyId]"`` per object."""
    table = Table(title=title, title_justify="left")
    table.add_column("object", overflow="fold")
    table.add_column("ServerSideEncryption", overflow="fold")
    table.add_column("SSEKMSKeyId", overflow="fold")
    if after:
        table.add_column("expected", overflow="fold")
    for obj in objects:
        sse, key = obj.after if after else obj.before
        cells = [obj.path, str(sse) if sse else "null", key or "null"]
        if after:
            cells.append("[green]yes[/]" if obj.after == obj.expected else f"[red]no: {obj.expected}[/]")
        table.add_row(*cells)
    return table


LOG_COLUMNS = ("s3_object_path", "current_timestamp_utc", "action_reason", "action_taken", "method")


def log_table(rows: list[dict[str, Any]]) -> Table:
    """``aws dynamodb scan --table-name $LOG_TABLE_NAME`` with the original's columns (+ method)."""
    table = Table(title="Log table", title_justify="left")
    for column in LOG_COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in LOG_COLUMNS))
    return table
