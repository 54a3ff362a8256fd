"""The API's JSON parser: DRF's, with a clear 400 for what the standard library or the database cannot
take, instead of a 500 further in: nesting deeper than any request of ours (the parser's recursion
limit), NUL characters and unpaired surrogates (PostgreSQL text refuses both), bytes that are not text."""

import codecs
import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as DRFJSONParser
from rest_framework.parsers import get_encoding
from rest_framework.utils.json import strict_constant

from billing.storable import json_problem

MAX_DEPTH = 32  # our deepest request body is 2 levels; Stripe's API refuses far less than this too


def body_problem(data) -> str | None:
    """What makes a parsed body unacceptable (billing/storable.py: what PostgreSQL cannot store), or None."""
    problem = json_problem(data, max_depth=MAX_DEPTH)
    return f"The JSON body cannot be taken: {problem}." if problem else None


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
