# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The retention policy (restic forget semantics, plugins/module_utils/_retention.py), shared by the
    # backup_rotation module and the retention_plan filter. The option names are _retention.POLICY_KEYS plus
    # timezone; tests/unit/test_doc_fragments.py keeps them equal.
    DOCUMENTATION = r'''
options:
  keep_last:
    description: Keep the newest N backups (-1 for all).
    type: int
  keep_hourly:
    description: For the last N hours that have backups, keep the newest of each (-1 for every hour).
    type: int
  keep_daily:
    description: For the last N days that have backups, keep the newest of each.
    type: int
  keep_weekly:
    description: For the last N ISO weeks (Monday first) that have backups, keep the newest of each.
    type: int
  keep_monthly:
    description: For the last N months that have backups, keep the newest of each.
    type: int
  keep_yearly:
    description: For the last N years that have backups, keep the newest of each.
    type: int
  keep_within:
    description: Keep every backup strictly newer than the newest (non-future) backup minus this duration
      (V(36h), V(7d), V(2w), V(6m), V(1y6m)).
    type: str
  keep_within_hourly:
    description: Within this duration, keep the newest backup of each hour.
    type: str
  keep_within_daily:
    description: Within this duration, keep the newest backup of each day.
    type: str
  keep_within_weekly:
    description: Within this duration, keep the newest backup of each week.
    type: str
  keep_within_monthly:
    description: Within this duration, keep the newest backup of each month.
    type: str
  keep_within_yearly:
    description: Within this duration, keep the newest backup of each year.
    type: str
  timezone:
    description: IANA time zone in which hours, days, weeks, months and years are counted. Default UTC.
    type: str
'''
