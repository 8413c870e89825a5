"""Parsing of the node's string-list parameters (ROS-free, so it is unit-tested directly)."""

from posediff_ros.categories import BY_ID, class_id


def parse_class(text: str) -> int:
    """'mug' or '6' -> 6 (NOCS id); raises ValueError."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        cls = int(text)
        if cls not in BY_ID:
            raise ValueError(f"class id {cls} is not a NOCS class (1..6)")
        return cls
    try:
        return class_id(text)
    except KeyError as err:
        raise ValueError(str(err.args[0])) from None


def parse_class_map(entries: list[str]) -> dict[int, int]:
    """['1:mug', '2:6'] -> {1: 6, 2: 6}: mask id -> NOCS class id."""
    out = {}
    for entry in entries:
        if not entry.strip():
            continue
        key, sep, value = entry.partition(":")
        if not sep or not key.strip().isdigit():
            raise ValueError(f"mask_classes entry {entry!r} is not '<mask id>:<class>'")
        out[int(key)] = parse_class(value)
    return out


def parse_palette(entries: list[str]) -> dict[tuple[int, int, int], int]:
    """['mug:#ff0000', 'bowl:0,255,0'] -> {(255, 0, 0): 6, (0, 255, 0): 2}."""
    out = {}
    for entry in entries:
        if not entry.strip():
            continue
        name, sep, colour = entry.partition(":")
        if not sep:
            raise ValueError(f"class_colors entry {entry!r} is not '<class>:<#rrggbb or r,g,b>'")
        colour = colour.strip()
        try:
            if colour.startswith("#") and len(colour) == 7:
                rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
            else:
                rgb = tuple(int(c) for c in colour.split(","))
        except ValueError:
            raise ValueError(f"class_colors entry {entry!r}: bad colour {colour!r}") from None
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise ValueError(f"class_colors entry {entry!r}: colour must be 3 values 0..255")
        out[rgb] = parse_class(name)
    return out
