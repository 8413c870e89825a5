"""Make an editable pip install of posediff_ros look like a colcon --symlink-install.

ament_index_python (``ros2 run``, ``ros2 launch``, get_package_share_directory) looks for
  <prefix>/share/ament_index/resource_index/packages/posediff_ros   (the marker)
  <prefix>/share/posediff_ros/{package.xml,launch,config,models}
  <prefix>/lib/posediff_ros/<executable>
pip's editable install creates none of these, so this links them to the source tree and
to the console scripts pip put in <prefix>/bin.

usage: python scripts/ament_links.py REPO PREFIX
"""

import os
import shutil
import sys
from importlib import metadata
from pathlib import Path

PACKAGE = "posediff_ros"
SHARED = ["package.xml", "launch", "config", "models"]


def console_scripts() -> list[str]:
    """Names of the installed distribution's console scripts."""
    dist = metadata.distribution(PACKAGE)
    return [ep.name for ep in dist.entry_points if ep.group == "console_scripts"]


def link(target: Path, link_path: Path) -> None:
    link_path.parent.mkdir(parents=True, exist_ok=True)
    if link_path.is_symlink() or link_path.is_file():
        link_path.unlink()
    link_path.symlink_to(target)


def main() -> None:
    repo, prefix = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    marker = prefix / "share/ament_index/resource_index/packages" / PACKAGE
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("")
    # Real folders with a link per file: ros2 launch searches share/ with os.walk, which does
    # not follow symlinked folders. A file removed from the source tree leaves a dangling link,
    # so each folder is rebuilt from scratch.
    for name in SHARED:
        source, target = repo / name, prefix / "share" / PACKAGE / name
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        if source.is_file():
            link(source, target)
            continue
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                link(path, target / path.relative_to(source))
    # pip puts console scripts in <prefix>/bin, setup.cfg's script_dir (legacy develop) in
    # <prefix>/lib/posediff_ros: make both places hold every script.
    bindir, libdir = prefix / "bin", prefix / "lib" / PACKAGE
    for script in console_scripts():
        in_bin, in_lib = bindir / script, libdir / script
        if in_bin.exists() and not in_bin.is_symlink():
            link(Path(os.path.relpath(in_bin, libdir)), in_lib)
        elif in_lib.exists() and not in_lib.is_symlink():
            link(Path(os.path.relpath(in_lib, bindir)), in_bin)
        elif not (in_bin.exists() or in_lib.exists()):
            sys.exit(f"ament_links: console script {script} not found: is the package installed?")

if __name__ == "__main__":
    main()
