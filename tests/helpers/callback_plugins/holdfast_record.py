# -*- coding: utf-8 -*-
# Test-only callback: appends every task result as one JSON line to $HOLDFAST_RECORD.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: holdfast_record
type: aggregate
short_description: Record task results as JSON lines (test harness only)
description: Writes each task result to the file named by HOLDFAST_RECORD.
'''

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'holdfast_record'
    CALLBACK_NEEDS_ENABLED = True

    def _record(self, result, status):
        path = os.environ.get('HOLDFAST_RECORD')
        if not path:
            return
        data = getattr(result, 'result', None)
        if data is None:
            data = getattr(result, '_result', {})
        task = getattr(result, 'task', None) or getattr(result, '_task', None)
        host = getattr(result, 'host', None) or getattr(result, '_host', None)
        entry = dict(task=task.get_name() if task else None, host=str(host), status=status,
                     result=data)
        with open(path, 'a') as handle:
            handle.write(json.dumps(entry, default=str) + '\n')

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record(result, 'failed')

    def v2_runner_on_skipped(self, result, **kwargs):
        self._record(result, 'skipped')

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._record(result, 'unreachable')
