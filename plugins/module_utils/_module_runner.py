# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way every module ends: HoldfastError becomes fail_json, warnings are shown, and the diff (which the
helpers always build) is only returned in diff mode."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError


def execute(module, func, **kwargs):
    """Run func(module.params, **kwargs), which returns a result dict or (result, warnings), and exit."""
    try:
        outcome = func(module.params, **kwargs)
    except HoldfastError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    result, warnings = outcome if isinstance(outcome, tuple) else (outcome, [])
    for warning in warnings:
        module.warn(warning)
    if not module._diff:
        result.pop('diff', None)
    module.exit_json(**result)
