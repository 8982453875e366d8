"""Benchmark: the tar gate (strict parse + re-encoding) in front of GNU tar, against plain `tar -x`.

Data set: 20,000 small files (about 8 KiB each), 3 x 100 MiB files, a sparse file, xattrs (about 470 MiB), archived
with volume_backup's own tar flags (pax format), plain and zstd-compressed. Each extraction goes into an empty
directory on the same disk, with the page cache dropped first; best of three, in wall time and in CPU time
(this process and its children).

- `tar -x`: GNU tar alone, with the restore's flags (owners, modes, xattrs, ACLs), reading the archive.
- gate + `tar -x`: what a restore runs (`zstd -dcf` -> gate -> `tar -x`), through _restore_read.extract_gated.
- old pass-through gate + `tar -x`: the gate before the re-encoding (checked headers, forwarded bytes as they were).
- gate alone: parse and re-encode into /dev/null (the gate's own cost).

Usage: python tests/bench/bench_tar_gate.py [workdir]   (prints a Markdown table)
"""

from __future__ import annotations

import importlib.util
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'helpers'))
from ansible_runner import collections_path  # noqa: E402
from benchlib import drop_caches  # noqa: E402

sys.path.insert(0, str(collections_path()))
from ansible_collections.holdfast.volumes.plugins.module_utils import _restore_read  # noqa: E402
from ansible_collections.holdfast.volumes.plugins.module_utils._archive_write import TAR_CREATE  # noqa: E402
from ansible_collections.holdfast.volumes.plugins.module_utils._members import MemberChecker  # noqa: E402
from ansible_collections.holdfast.volumes.plugins.module_utils._tar_gate import gate_stream  # noqa: E402


def make_dataset(root):
    rng = random.Random(7)
    for d in range(40):
        sub = os.path.join(root, 'small', 'd%02d' % d)
        os.makedirs(sub)
        for f in range(500):
            with open(os.path.join(sub, 'f%03d' % f), 'wb') as handle:
                handle.write(rng.randbytes(4096) + b'text ' * 800)
            if f % 50 == 0:
                os.setxattr(os.path.join(sub, 'f%03d' % f), 'user.bench', b'x')
    os.makedirs(os.path.join(root, 'big'))
    for i in range(3):
        with open(os.path.join(root, 'big', 'b%d' % i), 'wb') as handle:
            for _unused in range(100):
                handle.write(os.urandom(1 << 20))
    with open(os.path.join(root, 'sparse'), 'wb') as handle:
        handle.seek(1 << 30)
        handle.write(b'end')


def old_gate():
    """The pass-through gate of before (from git), for comparison."""
    source = subprocess.run(['git', '-C', str(ROOT), 'show', 'a1c2866:plugins/module_utils/_archive.py'],
                            capture_output=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / 'old_archive.py'
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location('old_archive', str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_seconds():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best(fn, prepare, runs=3):
    """Best wall time and best CPU time (this process and its children: zstd, tar) of `runs` cold-cache runs.
    CPU time is the steadier figure on a shared machine."""
    times, cpus = [], []
    for _unused in range(runs):
        prepare()
        drop_caches()
        started, cpu = time.monotonic(), cpu_seconds()
        fn()
        times.append(time.monotonic() - started)
        cpus.append(cpu_seconds() - cpu)
    return min(times), min(cpus)


def main():
    work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix='holdfast-bench-gate-', dir='/var/tmp'))
    src, out = work / 'src', work / 'out'
    if not src.exists():
        make_dataset(str(src))
    plain, packed = work / 'a.tar', work / 'a.tar.zst'
    if not plain.exists():
        with open(plain, 'wb') as handle:
            subprocess.run(TAR_CREATE[:] + [str(src), '.'], stdout=handle, check=True)
        subprocess.run(['zstd', '-q', '-f', '-T0', '-3', str(plain), '-o', str(packed)], check=True)
    size = plain.stat().st_size
    old = old_gate()

    def fresh():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()

    def tar_alone(archive):
        return lambda: subprocess.run('zstd -q -dcf < %s | %s -C %s' % (archive, ' '.join(
            "'%s'" % a for a in _restore_read.TAR_EXTRACT), out), shell=True, check=True)

    def gated(archive):
        return lambda: _restore_read.extract_gated(dict(disk_reserve='0'), str(archive), None, str(out))

    def old_gated(archive):
        def run():
            tar = subprocess.Popen(_restore_read.TAR_EXTRACT + ['-C', str(out)], stdin=subprocess.PIPE)
            zstd = subprocess.Popen(['zstd', '-q', '-dcf', str(archive)], stdout=subprocess.PIPE)
            old.gate_tar_stream(zstd.stdout, old.MemberChecker(), tar.stdin)
            tar.stdin.close()
            assert tar.wait() == 0 and zstd.wait() == 0
        return run

    def gate_only(archive):
        def run():
            zstd = subprocess.Popen(['zstd', '-q', '-dcf', str(archive)], stdout=subprocess.PIPE)
            with open(os.devnull, 'wb') as sink:
                gate_stream(zstd.stdout, MemberChecker(), sink)
            assert zstd.wait() == 0
        return run

    rows = []
    for label, archive in (('plain tar', plain), ('tar.zst', packed)):
        base, base_cpu = best(tar_alone(archive), fresh)
        for name, fn in (('tar -x (GNU tar alone)', None), ('gate + tar -x (a restore)', gated(archive)),
                         ('old pass-through gate + tar -x', old_gated(archive)),
                         ('gate alone, into /dev/null', gate_only(archive))):
            took, cpu = (base, base_cpu) if fn is None else best(fn, fresh)
            rows.append((label, name, took, size / took / 1048576, took / base, cpu, cpu / base_cpu))
    print('| archive | extraction | wall time | MiB/s (tar stream) | wall vs tar -x | CPU time | CPU vs tar -x |')
    print('| --- | --- | ---: | ---: | ---: | ---: | ---: |')
    for label, name, took, rate, ratio, cpu, cpu_ratio in rows:
        print('| %s | %s | %.2f s | %.0f | %.2fx | %.2f s | %.2fx |' % (label, name, took, rate, ratio, cpu, cpu_ratio))
    print('\narchive: %.0f MiB tar stream, %d members' % (size / 1048576, 20000 + 40 + 3 + 4))
    shutil.rmtree(out, ignore_errors=True)


if __name__ == '__main__':
    main()
