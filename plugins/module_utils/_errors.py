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
