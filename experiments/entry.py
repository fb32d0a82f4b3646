"""What every entry point does around its ``@hydra.main`` function: a user's mistake as one ``error:`` line and an
exit code instead of a traceback (``user_errors``, ``hydra_one_line_errors``), and the cyclic collector kept off
the imported modules (``freeze_long_lived``).

Nothing here imports PyTorch or the trainer: a process that only composes configs (the population launcher's)
stays without them.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import signal
import sys
from typing import Iterator

from agents.config import ConfigError, NumericalError, first_line

# Hydra plugins that live in an extra: a config that needs one names the extra when the plugin is missing.
ENGINE_EXTRAS = {"hydra/launcher/ray": "ray", "hydra/launcher/submitit": "slurm", "hydra/sweeper/optuna": "optuna"}

SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}

EXIT_CODES = {ConfigError: 2, NumericalError: 3, OSError: 2}


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _exit_code(exc: BaseException) -> int:
    return next(code for kind, code in EXIT_CODES.items() if isinstance(exc, kind))


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user's mistake (or a numerical fault, or a path that cannot be written) into one line on stderr
    and a non-zero exit, without a traceback.

    Inside a multirun job the exception is re-raised after the line is printed, so that Hydra records that job
    as failed and still runs the others; ``hydra_one_line_errors`` reports it once the sweep has finished.
    """
    try:
        yield
    except (ConfigError, NumericalError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if _in_multirun():
            raise
        sys.exit(_exit_code(exc))


_frozen_modules = 0  # len(sys.modules) when freeze_long_lived last froze


def freeze_long_lived() -> None:
    """Once the process has imported what it runs: CPython's ``gc.freeze()`` moves every object alive now (the
    imported modules: torch, Hydra, Gymnasium — hundreds of thousands of objects that live as long as the
    process) out of the cyclic collector's reach, so its full collections stop rescanning them (and forked
    workers share them untouched); at exit it freezes again, so the interpreter's last full collection has nothing
    left to scan. Only cyclic collection is affected: objects freed by reference counting are freed as before, and
    the garbage already there is collected first (a process that called other code before, e.g. a test session,
    keeps nothing it had dropped).

    Called by the entry points before Hydra starts and again where the trainer has been imported (PyTorch comes
    later than the entry point: see ``agents/__init__.py``); a call after which nothing was imported does nothing."""
    global _frozen_modules
    if len(sys.modules) > _frozen_modules:
        if not _frozen_modules:
            atexit.register(gc.freeze)
        _frozen_modules = len(sys.modules)
        gc.collect()
        gc.freeze()


def hydra_one_line_errors(hydra_main) -> None:
    """Run a ``@hydra.main`` function so that Hydra's own refusals (unknown key, wrong type, bad override
    syntax, missing config) print as one ``error:`` line with exit code 2 instead of Hydra's multi-line report.

    Hydra raises instead of reporting when HYDRA_FULL_ERROR is set; a user who set it gets the full trace.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    freeze_long_lived()
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except (HydraException, OmegaConfBaseException) as exc:
        message = first_line(exc)
        options = str(exc).split("Available options", 1)
        if len(options) == 2:  # a missing config group option: list the choices on the same line
            listing = options[1].split("Config search path", 1)[0]
            choices = [line.strip() for line in listing.splitlines()[1:] if line.strip()]
            message += f" (available: {', '.join(choices)})"
        cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else None
        if cause is None and isinstance(exc, OmegaConfBaseException):
            cause = exc
        if cause is not None:
            key = getattr(cause, "full_key", None)
            detail = first_line(cause)
            message = f"{key}: {detail}" if key else detail
            if "not in" in detail or "not in struct" in detail:
                message += " (unknown key: check the spelling; new keys need a leading '+')"
        for plugin, extra in ENGINE_EXTRAS.items():
            if f"'{plugin}" in message:
                message += f' (needs the {extra} extra: pip install -e ".[{extra}]")'
                break
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except (ConfigError, NumericalError, OSError) as exc:  # after Hydra's own (some are OSErrors)
        prefix = "a job of the multirun failed: " if isinstance(exc, (ConfigError, NumericalError)) else ""
        print(f"error: {prefix}{exc}", file=sys.stderr)
        sys.exit(_exit_code(exc))
    except KeyboardInterrupt:  # Ctrl-C outside a training loop (start-up, collecting a sweep) or a second one
        print("interrupted: stopped at once; every checkpoint already written is kept", file=sys.stderr)
        sys.exit(SIGNAL_EXIT_CODES[signal.SIGINT])
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)
