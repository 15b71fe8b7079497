"""The one rule for choosing classes by name or id (data.classes, `adlab data filter --keep`,
`adlab data synth-scenes --classes`)."""

from __future__ import annotations

from adlab.errors import DataError

MAX_LISTED = 30  # an error lists at most this many valid names (an ImageNet-sized tree has 1,000)


def resolve_classes(wanted: list, names: list[str], key: str) -> list[int]:
    """Ids in `names` of the classes `wanted`, in the order given.

    An item is matched, after stripping surrounding spaces, to the name spelled exactly so; else to
    the one name equal to it ignoring case (two such names are an error: no guessing); else, if it
    is an int or a string of digits, it is a class id. So a class named '3' wins over id 3. An empty
    list, an unknown name, an id out of range or a class given twice is a one-line DataError that
    starts with `key` (the config key or file the list came from) and lists the valid names.
    """
    if not wanted:
        raise DataError(f"{key}: give at least one class (valid: {_listed(names)})")
    folded: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        folded.setdefault(name.casefold(), []).append(index)
    ids: list[int] = []
    unknown: list[str] = []
    for item in wanted:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise DataError(f"{key}: {item!r} is neither a class name nor a class id")
        text = item.strip() if isinstance(item, str) else None
        if text is not None and text in names:
            index = names.index(text)
        elif text is not None and len(folded.get(text.casefold(), [])) > 1:
            matches = ", ".join(names[i] for i in folded[text.casefold()])
            raise DataError(f"{key}: class {text!r} matches {matches} ignoring case; give the exact name")
        elif text is not None and text.casefold() in folded:
            index = folded[text.casefold()][0]
        elif text is None or text.isdigit():  # text is None: item is an int
            index = int(item)
            if not 0 <= index < len(names):
                raise DataError(f"{key}: class id {index} out of range 0..{len(names) - 1}")
        else:
            unknown.append(text)
            continue
        if index in ids:
            raise DataError(f"{key}: class {names[index]!r} given twice")
        ids.append(index)
    if unknown:
        label = "class" if len(unknown) == 1 else "classes"
        raise DataError(f"{key}: unknown {label} {', '.join(repr(u) for u in unknown)} (valid: {_listed(names)})")
    return ids


def _listed(names: list[str]) -> str:
    if len(names) <= MAX_LISTED:
        return ", ".join(names)
    return ", ".join(names[:MAX_LISTED]) + f", ... ({len(names)} in all)"
