"""The six NOCS categories: ids, names, symmetry.

Class ids follow REAL275 / CAMERA25 ground truth (1..6; 0 is background there).
Canonical object frames (see docs): origin at the bounding-box centre, +y up, front
toward +x (mug handle, camera lens, laptop keyboard side). The NOCS scale of an object
is its bounding-box diagonal.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    id: int  # NOCS class id (1-based)
    name: str
    y_symmetric: bool  # rotation about +y leaves the shape unchanged (bottle, bowl, can)


CATEGORIES: tuple[Category, ...] = (
    Category(1, "bottle", True),
    Category(2, "bowl", True),
    Category(3, "camera", False),
    Category(4, "can", True),
    Category(5, "laptop", False),
    Category(6, "mug", False),  # symmetric only when the handle is hidden (NOCS protocol)
)
NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)
BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}
BY_ID: dict[int, Category] = {c.id: c for c in CATEGORIES}
NUM_CLASSES = len(CATEGORIES)


def class_id(name: str) -> int:
    """NOCS class id of a category name; raises KeyError with the known names."""
    try:
        return BY_NAME[name].id
    except KeyError:
        raise KeyError(f"unknown category {name!r}; known: {', '.join(NAMES)}") from None


def is_symmetric(cls_id: int, handle_visible: bool = True) -> bool:
    """Whether the pose protocol ignores rotation about y for this object."""
    if cls_id == BY_NAME["mug"].id:
        return not handle_visible
    return BY_ID[cls_id].y_symmetric
