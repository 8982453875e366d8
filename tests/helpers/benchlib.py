# -*- coding: utf-8 -*-
"""What the benchmarks share: a cold page cache before each timed run."""

from __future__ import annotations

import subprocess


def drop_caches():
    """Write back and drop the page cache (root only; elsewhere the runs are warm, which only flatters the
    baseline and the module alike)."""
    subprocess.run(['sync'], check=True)
    try:
        with open('/proc/sys/vm/drop_caches', 'w') as handle:
            handle.write('3\n')
    except OSError:
        pass
