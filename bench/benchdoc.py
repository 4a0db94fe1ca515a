"""Shared by the benchmark scripts: the machine line and the section rewrite of
docs/BENCHMARKS.md (each command owns one `## ` section and replaces it whole)."""

import datetime
import os
import subprocess


def machine(root):
    """Cores, CPU model, memory, commit and date, for the line under each section title."""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=root).stdout.strip()
    return f"{os.cpu_count()} cores, {cpu}, {mem} MiB; commit {commit}; {datetime.date.today()}"


def replace_section(path, section):
    """Writes `section` (starting with its `## ` title line) into the file at `path`, in place of
    the section with the same title, or appended when there is none."""
    title = section.split("\n", 1)[0]
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    start = text.find(title)
    if start >= 0:
        end = text.find("\n## ", start + 5)
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)
