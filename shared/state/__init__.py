"""State kept in Blob Storage: definitions, run plans, chunk checkpoints, rejected rows, reports.

Layout of the one storage account (Azurite locally)::

    segments/        input files, as upstream writes them
    exports/         connections/<name>.json, exports/<name>.json (validated on write and read)
    export-runs/     <export>/<run id>/plan.json, report.json, rejected.csv,
                     chunks/<n>.items + .invalid.csv (the plan's work; its counts are in plan.json),
                     chunks/<n>.progress (confirmed batches), chunks/<n>.json (checkpoint),
                     chunks/<n>.rejected.csv (refused by the vendor or not sent)
    export-state/    state across runs: rate-budgets/<connection>.json (who sends to a
                     connection now: shared/budgets.py)

Everything here is JSON or CSV a person can open. Writes of a chunk's files happen before
its checkpoint, so a checkpoint always describes files that exist.
"""

from .definitions import DefinitionStore
from .items import (
    ITEM_PIECE_BYTES,
    ITEMS_COMPRESSION,
    BackgroundWrites,
    BlobWriter,
    compression_of,
    decompressed,
)
from .runs import RunStore
from .storage import CONTAINERS, RUNS_CONTAINER, Storage

__all__ = ["CONTAINERS", "ITEMS_COMPRESSION", "ITEM_PIECE_BYTES", "RUNS_CONTAINER", "BackgroundWrites",
           "BlobWriter", "DefinitionStore", "RunStore", "Storage", "compression_of", "decompressed"]
