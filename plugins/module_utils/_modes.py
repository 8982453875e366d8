# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Modes and ids: an octal or symbolic mode applied to a current one, integers refused (YAML's unquoted modes), and
owner/group names resolved to numeric ids on this host. Pure but for the passwd/group lookup.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import grp
import pwd
import re
import stat

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError

MAX_ID = 4294967294  # (uid_t)-1 means "unchanged" to the kernel
SYMBOLIC_RE = re.compile(r'^([ugoa]*)([-+=])([rwxXst]*)$')


def parse_id(value, kind):
    """A numeric id (int or digits) or a name resolved on this host. Returns an int or None."""
    if value is None or value == '':
        return None
    if isinstance(value, bool):
        raise HoldfastError("%s must be a number or a name, got %r." % (kind, value))
    if isinstance(value, int) or (isinstance(value, str) and re.match(r'^-?\d+$', value.strip())):
        number = int(value)
        if number < 0 or number > MAX_ID:
            raise HoldfastError("%s %s is out of range: ids go from 0 to %d." % (kind, number, MAX_ID))
        return number
    if not isinstance(value, str):
        raise HoldfastError("%s must be a number or a name, got %r." % (kind, value))
    try:
        return pwd.getpwnam(value).pw_uid if kind == 'owner' else grp.getgrnam(value).gr_gid
    except KeyError:
        raise HoldfastError("%s %r does not exist on this host; use a numeric id (containers' users usually do not "
                            "exist on the host, e.g. 999 for postgres)." % (kind, value)) from None


def quoted_modes(value):
    """Pure: the quoted forms a user may have meant by an integer mode. YAML reads `mode: 700` as the number 700
    (which is 0o1274) and `mode: 0640` as 416 (0o640): digits that are all octal may have been meant as written,
    and a number up to 0o777 may be what YAML made of an octal literal."""
    forms = []
    if value <= 0o777 and value >= 0:
        forms.append('%04o' % value)
    if re.match(r'^[0-7]{1,4}$', str(value)) and str(value).zfill(4) not in forms:
        forms.append(str(value).zfill(4))
    return forms or ['0750']


def refuse_integer_mode(value, name='mode'):
    """Modes are strings: an integer was read by YAML (or a template) and is never applied as it is."""
    if isinstance(value, int) and not isinstance(value, bool):
        forms = quoted_modes(value)
        raise HoldfastError(
            '%s must be a quoted string, got the integer %d: write %s%s, or a symbolic mode such as '
            '"u=rwX,g=rX,o=". YAML reads an unquoted mode as a number (700 would be applied as 0o1274, 0640 '
            'arrives as 416), so integers are refused; nothing was changed.'
            % (name, value, ' or '.join('%s: "%s"' % (name, form) for form in forms),
               ' (whichever you meant)' if len(forms) > 1 else ''))


class ModeSpec(object):
    """An octal mode or a symbolic one (u=rwX,g=rX,o=), applied to a current mode. Integers are refused."""

    def __init__(self, spec, name='mode'):
        self.text = spec
        self.octal = None
        self.clauses = None
        if isinstance(spec, bool):
            raise HoldfastError("%s must be octal (e.g. '0750') or symbolic (e.g. 'u=rwX,g=rX,o='), got %r."
                                % (name, spec))
        refuse_integer_mode(spec, name)
        text = str(spec).strip()
        if re.match(r'^0?[0-7]{3,4}$', text) or re.match(r'^0o[0-7]{1,4}$', text):
            self.octal = int(text.replace('0o', ''), 8)
            if self.octal > 0o7777:
                raise HoldfastError("%s %r is out of range." % (name, spec))
            return
        clauses = []
        for clause in text.split(','):
            match = SYMBOLIC_RE.match(clause.strip())
            if not match:
                raise HoldfastError("%s %r is neither octal (e.g. '0750') nor symbolic (e.g. 'u=rwX,g=rX,o=')."
                                    % (name, spec))
            clauses.append(match.groups())
        self.clauses = clauses

    def apply(self, current, is_dir):
        current = stat.S_IMODE(current)
        if self.octal is not None:
            return self.octal
        mode = current
        for who, op, perms in self.clauses:
            who = who or 'a'
            if 'a' in who:
                who = 'ugo'
            bits = 0
            for p in perms:
                if p == 'r':
                    bits |= sum({'u': 0o400, 'g': 0o040, 'o': 0o004}[w] for w in who)
                elif p == 'w':
                    bits |= sum({'u': 0o200, 'g': 0o020, 'o': 0o002}[w] for w in who)
                elif p == 'x' or (p == 'X' and (is_dir or current & 0o111)):
                    bits |= sum({'u': 0o100, 'g': 0o010, 'o': 0o001}[w] for w in who)
                elif p == 's':
                    bits |= (0o4000 if 'u' in who else 0) | (0o2000 if 'g' in who else 0)
                elif p == 't':
                    bits |= 0o1000
            if op == '+':
                mode |= bits
            elif op == '-':
                mode &= ~bits
            else:
                mask = 0
                for w in who:
                    mask |= {'u': 0o4700, 'g': 0o2070, 'o': 0o1007}[w]
                mode = (mode & ~mask) | bits
        return mode


def mode_option(params, name):
    """The ModeSpec of the module option `name`, or None when it is not given (None or '')."""
    return ModeSpec(params[name], name) if params.get(name) not in (None, '') else None
