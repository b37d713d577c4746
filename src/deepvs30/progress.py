"""One progress bar for every long step (ingest, prepare, training epochs, tune trials, the
real benchmark's fits, predict over many files): counts, rate and time left, on stderr.

Bars show only where someone watches: when stderr is a terminal. CI logs and files get none.
``DEEPVS30_PROGRESS=1`` forces them on, ``=0`` off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

PROGRESS_ENV = "DEEPVS30_PROGRESS"


def enabled() -> bool:
    flag = os.environ.get(PROGRESS_ENV, "").strip()
    if flag in ("0", "1"):
        return flag == "1"
    return sys.stderr.isatty()


def bar(
    iterable: Iterable | None = None,
    *,
    desc: str,
    unit: str,
    total: int | None = None,
    show: bool = True,
    **kwargs: Any,
):
    """A tqdm bar; with ``show=False``, or where :func:`enabled` is false, a silent one."""
    from tqdm import tqdm

    return tqdm(
        iterable,
        desc=desc,
        unit=unit,
        total=total,
        disable=not (show and enabled()),
        mininterval=2.0,
        dynamic_ncols=True,
        **kwargs,
    )
