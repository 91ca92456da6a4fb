"""What the process tests ask of a process they started or killed."""

import psutil


def ended(pid: int) -> bool:
    """Whether process ``pid`` has exited: gone, or a zombie its parent has not reaped yet. A process reaped
    between two looks (``pid_exists``, then its status) is gone, not an error."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
