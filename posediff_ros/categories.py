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


# Class names as detectors and segmenters write them (COCO, Objects365, LVIS, open-vocabulary
# prompts) -> NOCS category. Keys are normalised (see normalise_class_name).
DEFAULT_ALIASES: dict[str, str] = {
    "cup": "mug", "coffee cup": "mug", "coffee mug": "mug", "tea cup": "mug", "teacup": "mug",
    "water bottle": "bottle", "beer bottle": "bottle", "wine bottle": "bottle",
    "plastic bottle": "bottle", "soup bowl": "bowl", "mixing bowl": "bowl",
    "laptop computer": "laptop", "notebook computer": "laptop",
    "digital camera": "camera", "camcorder": "camera",
    "tin can": "can", "tin": "can", "soda can": "can", "beer can": "can", "canned": "can",
    "drink can": "can",
}


def normalise_class_name(text: str) -> str:
    """'Coffee_Cup ' -> 'coffee cup': case, '_' / '-' and repeated spaces do not matter."""
    return " ".join(text.replace("_", " ").replace("-", " ").lower().split())


class ClassNames:
    """Class names from the wire -> NOCS class ids: `aliases` (on top of DEFAULT_ALIASES),
    the NOCS names, and the NOCS numbers 1..6, all case-insensitive. Unknown names give None
    and are counted in `unknown` (bounded: names come from the wire)."""

    MAX_NAMES = 64

    def __init__(self, aliases: dict[str, int] | None = None, defaults: bool = True):
        self.table: dict[str, int] = {n: BY_NAME[c].id for n, c in DEFAULT_ALIASES.items()} \
            if defaults else {}
        self.table.update({c.name: c.id for c in CATEGORIES})
        self.table.update({str(c.id): c.id for c in CATEGORIES})
        self.table.update({normalise_class_name(k): v for k, v in (aliases or {}).items()})
        self.unknown: dict[str, int] = {}

    def resolve(self, text: str) -> int | None:
        cls = self.table.get(normalise_class_name(text))
        if cls is None:
            key = text if text in self.unknown or len(self.unknown) < self.MAX_NAMES else "..."
            self.unknown[key] = self.unknown.get(key, 0) + 1
        return cls
