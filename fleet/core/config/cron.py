"""Image Builder's schedule expressions: what `CreateImagePipeline` accepts as a cron.

Pure; used by the stack model (``imagePipelineSchedule``).
"""

from __future__ import annotations

# When the image pipeline bakes by default: Sundays 04:00 UTC. Image Builder's cron takes six
# fields (minute hour day-of-month month day-of-week year) inside cron(...).
DEFAULT_IMAGE_PIPELINE_SCHEDULE = "cron(0 4 ? * sun *)"

# Image Builder's cron (docs: "Use cron expressions in Image Builder"): six fields, each a
# list of values, ranges and increments, plus ? L W # where the field allows them.
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _WEEKDAYS),
    ("year", 1970, 2199, ()),
)


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    if text.lower() in names:
        return True
    return text.isdigit() and low <= int(text) <= high


def _cron_item(field: str, item: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    """One comma-separated item of a field."""
    if field == "day-of-month" and (item in ("L", "LW") or item.endswith("W")):
        return item in ("L", "LW") or _cron_value(item[:-1], low, high, ())
    if field == "day-of-week":
        if item == "L" or (item.endswith("L") and _cron_value(item[:-1], low, high, names)):
            return True
        if "#" in item:
            day, _, week = item.partition("#")
            return _cron_value(day, low, high, names) and week in ("1", "2", "3", "4", "5")
    base, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) >= 1):
        return False
    if base == "*":
        return True
    start, dash, end = base.partition("-")
    return _cron_value(start, low, high, names) and (not dash or _cron_value(end, low, high, names))


def image_builder_cron_problem(expression: str) -> str | None:
    """Why Image Builder would refuse `expression` as a pipeline schedule, or None."""
    if not (expression.startswith("cron(") and expression.endswith(")")):
        return "is not a cron(...) expression"
    fields = expression[len("cron(") : -1].split(" ")
    if len(fields) != len(_CRON_FIELDS):
        return (
            f"has {len(fields)} fields separated by single spaces; Image Builder takes six: "
            "minute hour day-of-month month day-of-week year"
        )
    for text, (field, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        if text == "?" and field in ("day-of-month", "day-of-week"):
            continue
        if not all(_cron_item(field, item, low, high, names) for item in text.split(",")):
            allowed = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")
            return f"has an invalid {field} field {text!r} (values {allowed})"
    if (fields[2] == "?") == (fields[4] == "?"):
        return "must have ? in exactly one of day-of-month and day-of-week"
    return None
