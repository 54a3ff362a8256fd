"""What PostgreSQL can store of decoded text and JSON: text and jsonb refuse a NUL character and a lone
(unpaired) surrogate, jsonb refuses NaN and Infinity, and nesting beyond any sender's is refused too.
One rule for the webhook pipeline (webhooks/bodies.py), the API's parser (config/api_parsers.py) and
the ids a store names (a store adapter looking one up)."""

import math


def text_problem(value: str) -> str:
    """Why PostgreSQL cannot store this text ("" if it can)."""
    if "\x00" in value:
        return "it holds a NUL character (\\u0000), which PostgreSQL cannot store in text or JSON"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"it holds a lone surrogate (an unpaired surrogate, \\u{ord(value[exc.start]):04x}), which is "
                "not Unicode text and cannot be stored")
    return ""


def json_problem(value, *, max_depth: int) -> str:
    """Why PostgreSQL cannot store this decoded JSON ("" if it can). Iterative: a deep value never costs
    Python's stack."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return f"it is nested deeper than {max_depth} levels"
        if isinstance(item, dict):
            for key, child in item.items():
                problem = text_problem(key) if isinstance(key, str) else ""
                if problem:
                    return problem
                stack.append((child, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return problem
        elif isinstance(item, float) and not math.isfinite(item):
            return "it holds NaN or Infinity, which JSON in PostgreSQL cannot hold"
    return ""
