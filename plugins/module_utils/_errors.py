# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one domain exception of the collection.

Every helper raises HoldfastError with a message that says what went wrong
and what to do next; each module's main() turns it into fail_json().
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class HoldfastError(Exception):
    """An error whose message is meant for the operator, not a traceback."""

    def __init__(self, msg, **details):
        super(HoldfastError, self).__init__(msg)
        self.msg = msg
        self.details = details


def refuse_negative(params, *names):
    """Timeouts and the like in seconds: 0 or more (a negative one would mean 'forever' to some tools, or nothing)."""
    for name in names:
        value = params.get(name)
        if value is not None and not isinstance(value, bool) and value < 0:
            raise HoldfastError("%s must be 0 or more seconds, got %s. Nothing was changed." % (name, value))
