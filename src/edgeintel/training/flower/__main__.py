"""``python -m edgeintel.training.flower APP_DIR [key=value ...]``: write a Flower app folder.

Keys are the Flower run-config keys of :class:`FlowerSettings` (e.g. ``num-server-rounds=5
dataset=mnist model=image_cnn dp-noise-multiplier=1.0``).
"""

from __future__ import annotations

import sys

from edgeintel.errors import EdgeIntelError
from edgeintel.training.flower.settings import FlowerSettings, write_flower_app


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    try:
        pairs = dict(a.split("=", 1) for a in args[1:])
        settings = FlowerSettings.from_run_config(pairs)
        out = write_flower_app(args[0], settings)
    except EdgeIntelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError:
        print("error: settings must be given as key=value", file=sys.stderr)
        return 2
    print(f"wrote {out / 'pyproject.toml'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
