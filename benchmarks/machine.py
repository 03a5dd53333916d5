"""The machine a benchmark ran on, for the results tables (CPU model and memory from /proc)."""
from __future__ import annotations

from pathlib import Path


def cpu_and_memory() -> tuple[str, str]:
    cpu, mem = "unknown CPU", "unknown memory"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines()
                          if l.startswith("MemTotal")).split()[1])
        mem = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        pass
    return cpu, mem
