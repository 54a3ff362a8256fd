"""Staff notes on a subscriber: append-only. A note is never edited or deleted from the console; a
correction is a new note (docs/support.md "Notes"), so what an agent read yesterday is still there."""

from accounts.models import Subscriber
from audit.models import Note

NOTE_MAX_LENGTH = 5000


def note_add(*, subscriber: Subscriber, author, text: str) -> Note:
    text = text.strip()
    if not text:
        raise ValueError("A note needs some text.")
    return Note.objects.create(subscriber=subscriber, author=author, author_label=author.get_username(),
                               text=text[:NOTE_MAX_LENGTH])
