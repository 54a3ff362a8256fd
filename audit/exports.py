"""The audit log as CSV, streamed (memory flat whatever the number of rows): a header row first, times
in UTC ISO 8601, `details` as JSON. A cell that a spreadsheet would run as a formula (a reason typed
as `=HYPERLINK(...)`) is prefixed with a quote."""

import csv
import io
import json
from collections.abc import Iterable, Iterator

HEADER = ("id", "created_at", "actor", "actor_user_id", "actor_api_key_id", "action", "reason", "user_id",
          "subscription_id", "target", "undoes", "details")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def entry_row(entry) -> tuple:
    return (entry.pk, entry.created_at.isoformat(), entry.actor_label, entry.actor_user_id, entry.actor_api_key_id,
            entry.action, entry.reason, entry.subscriber.external_id if entry.subscriber_id else None,
            entry.subscription_id, entry.target, entry.undoes_id,
            json.dumps(entry.details, ensure_ascii=False, sort_keys=True))


def csv_chunks(entries: Iterable, *, rows_per_chunk: int = 500) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for count, entry in enumerate(entries, start=1):
        writer.writerow([_cell(value) for value in entry_row(entry)])
        if count % rows_per_chunk == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
