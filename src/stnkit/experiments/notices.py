"""Our deprecation notices on the command line: one line each, once per command."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def one_line_warnings(prog: str) -> Iterator[None]:
    """Our deprecation notices (``FutureWarning``) as one line each, once per command:
    ``stnkit train: warning: ...``."""
    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if str(message) not in shown:
            shown.add(str(message))
            print(f"{prog}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", FutureWarning)
        warnings.showwarning = show
        yield
