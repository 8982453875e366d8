# -*- coding: utf-8 -*-
"""Our retention policy against the real `restic forget --dry-run`, on the same timestamps.

Debian 12 ships restic 0.14, which predates two rules of current restic that our policy follows (as the
rotation issue specifies): `-1` meaning unlimited (0.14: give it a count larger than the list instead), and
"the oldest item is also kept by every rule that still has count left". So the assertion is exact equality,
except that our result may additionally keep the oldest item, and only when it was kept for a rule.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._retention import apply_policy, parse_time

UTC = dt.timezone.utc
POLICIES = [
    dict(keep_last=3),
    dict(keep_hourly=5),
    dict(keep_daily=7),
    dict(keep_weekly=4),
    dict(keep_monthly=6),
    dict(keep_yearly=3),
    dict(keep_daily=-1),
    dict(keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=-1),
    dict(keep_last=2, keep_hourly=3, keep_weekly=30),
    dict(keep_within='3d'),
    dict(keep_within='1m'),
    dict(keep_within='1y2m3d4h'),
    dict(keep_within_daily='10d'),
    dict(keep_within_weekly='2m', keep_within_monthly='1y'),
    dict(keep_within_hourly='2d', keep_daily=3, keep_within='1d'),
    dict(keep_monthly=100),
]


def timestamps():
    rng = random.Random(20261126)
    base = dt.datetime(2023, 1, 1, tzinfo=UTC)
    seen = set()
    out = []
    # year-end ISO weeks, month ends, a leap day, clusters within hours and days
    fixed = ['2020-12-28T10:00:00', '2020-12-31T23:00:00', '2021-01-03T12:00:00', '2021-01-04T00:30:00',
             '2024-02-29T12:00:00', '2024-03-31T06:00:00', '2024-03-30T06:00:00', '2024-03-02T06:00:00']
    for text in fixed:
        out.append(parse_time(text + 'Z'))
    for _unused in range(24):
        when = base + dt.timedelta(seconds=rng.randrange(0, 3 * 365 * 86400))
        out.append(when)
        for _unused in range(rng.choice([0, 0, 1, 2])):
            out.append(when - dt.timedelta(seconds=rng.randrange(60, 30 * 3600)))
    result = []
    for when in out:
        when = when.replace(microsecond=0)
        if when not in seen and when < dt.datetime.now(UTC):
            seen.add(when)
            result.append(when)
    return result


@pytest.fixture(scope='module')
def restic_repo(tmp_path_factory):
    restic = shutil.which('restic')
    assert restic, 'restic is missing: scripts/setup.sh installs it'
    root = tmp_path_factory.mktemp('restic')
    env = dict(os.environ, RESTIC_PASSWORD='holdfast-test-only', RESTIC_REPOSITORY=str(root / 'repo'), TZ='UTC',
               RESTIC_CACHE_DIR=str(root / 'cache'))
    subprocess.run([restic, 'init'], env=env, check=True, capture_output=True)
    data = root / 'data'
    data.mkdir()
    times = timestamps()
    (data / 'f').write_text('content')

    def backup(when):
        subprocess.run([restic, 'backup', '--quiet', '--host', 'h', '--time', when.strftime('%Y-%m-%d %H:%M:%S'),
                        str(data)], env=env, check=True, capture_output=True)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(backup, times))
    return restic, env, times


def restic_flags(policy, n):
    flags = []
    for key, value in policy.items():
        flags += ['--' + key.replace('_', '-'), str(n + 1 if value == -1 else value)]
    return flags


@pytest.mark.parametrize('policy', POLICIES, ids=lambda p: ','.join('%s=%s' % kv for kv in p.items()))
def test_same_decisions_as_restic(restic_repo, policy):
    restic, env, times = restic_repo
    out = subprocess.run([restic, 'forget', '--dry-run', '--json', '--host', 'h'] + restic_flags(policy, len(times)),
                         env=env, check=True, capture_output=True, text=True).stdout
    groups = json.loads(out.strip().splitlines()[-1])
    assert len(groups) == 1
    restic_keep = sorted(parse_time(s['time']) for s in groups[0]['keep'] or [])
    restic_remove = sorted(parse_time(s['time']) for s in groups[0]['remove'] or [])
    assert len(restic_keep) + len(restic_remove) == len(times)
    ours = apply_policy([{'time': x} for x in times], policy, now=dt.datetime.now(UTC))
    ours_keep = sorted(e['item']['time'] for e in ours['keep'])
    oldest = min(times)
    extra = sorted(set(ours_keep) - set(restic_keep))
    assert set(restic_keep) <= set(ours_keep), 'restic keeps items we would remove'
    assert extra in ([], [oldest]), 'we keep more than the oldest item: %s' % extra
    assert 0 < len(ours_keep) <= len(times)
