"""The API's JSON parser: DRF's, with a clear 400 for what the standard library or the database cannot
take, instead of a 500 further in: nesting deeper than any request of ours (the parser's recursion
limit), NUL characters and unpaired surrogates (PostgreSQL text refuses both), bytes that are not text."""

import codecs
import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as DRFJSONParser
from rest_framework.parsers import get_encoding
from rest_framework.utils.json import strict_constant

MAX_DEPTH = 32  # our deepest request body is 2 levels; Stripe's API refuses far less than this too


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "an unpaired surrogate"
    return None


def body_problem(data) -> str | None:
    """What makes a parsed body unacceptable, or None. Iterative: a deep body must not recurse here."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"The JSON body is nested deeper than {MAX_DEPTH} levels."
        if isinstance(value, str):
            found = _string_problem(value)
            if found:
                return f"A string in the JSON body contains {found}."
        elif isinstance(value, dict):
            stack.extend((key, depth) for key in value)
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return None


class JSONParser(DRFJSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})  # a charset that is no text codec: 400 there
        try:
            text = codecs.getreader(encoding)(stream).read()
        except UnicodeDecodeError:
            raise ParseError(f"The body is not {encoding} text.") from None
        try:
            data = json.loads(text, parse_constant=strict_constant if self.strict else None)
        except RecursionError:
            raise ParseError(f"The JSON body is nested deeper than {MAX_DEPTH} levels.") from None
        except json.JSONDecodeError as exc:
            raise ParseError(f"The body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") \
                from None
        except ValueError:  # NaN / Infinity (strict_constant)
            raise ParseError("The body is not valid JSON: NaN and Infinity are not JSON numbers.") from None
        problem = body_problem(data)
        if problem:
            raise ParseError(problem)
        return data
