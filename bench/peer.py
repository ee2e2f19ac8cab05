"""The peer: Campaign Monitor's official Python client importing a segment, as a user would.

    python -m bench.peer JOB_JSON

Reads the segment CSV from Blob Storage, then calls `Subscriber.import_subscribers` with
1,000 subscribers at a time, one call after the other: the plain loop the client's
documentation leads to. Its CA file is the stand-in's (see scenarios._createsend_trusting).
Prints the seconds that took, its interpreter's start and imports excluded, as the
exporter's runs are timed once it has imported the app.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time

from azure.storage.blob import BlobServiceClient
from createsend import CreateSend, Subscriber


def main(job: dict) -> None:
    CreateSend.base_uri = job["base_uri"]
    blob = BlobServiceClient.from_connection_string(job["storage"]).get_blob_client("segments", job["segment"])
    rows = csv.DictReader(io.StringIO(blob.download_blob().readall().decode("utf-8")))
    subscriber = Subscriber({"api_key": job["api_key"]}, job["list_id"])
    batch = []
    for row in rows:
        batch.append({"EmailAddress": row["Email"], "Name": row["FirstName"], "ConsentToTrack": "Unchanged",
                      "CustomFields": [{"Key": "City", "Value": row["City"]}]})
        if len(batch) == 1000:
            subscriber.import_subscribers(job["list_id"], batch, False)
            batch = []
    if batch:
        subscriber.import_subscribers(job["list_id"], batch, False)


if __name__ == "__main__":
    started = time.monotonic()
    main(json.loads(sys.argv[1]))
    print(json.dumps({"seconds": round(time.monotonic() - started, 2)}))
