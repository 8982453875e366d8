# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention policy: which backups to keep, with the semantics of restic's `forget`.

Pure functions, no I/O. The algorithm follows restic's ApplyPolicy:

- Items are sorted newest first (stable for equal times).
- Counting rules (last, hourly, daily, weekly, monthly, yearly) each hold a count (-1: unlimited) and the
  period key of the item they kept last (initially none). Walking newest to oldest, a rule with count left keeps
  an item whose period key differs from its last kept key, and decrements its count. The oldest item is also kept
  by every rule that still has count left, so history reaches as far back as the counts allow.
- keep_within keeps items strictly newer than `latest - duration`, where latest is the newest item that is not in
  the future; durations use calendar arithmetic for years, months and days (like Go's AddDate: 31 March minus one
  month is 3 March, the normalised "31 February") and exact hours.
- keep_within_<period> keeps, among the items within its duration, the newest of each period (same walk as the
  counting rules, without a count).
- The result is the union of all rules, with the reasons each item was kept.

Period keys: hour YYYYMMDDHH, day YYYYMMDD, ISO week year*100+week (weeks start on Monday), month YYYYMM, year;
computed in UTC unless an IANA timezone is given. Extension over restic: the duration unit `w` (7 days).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # Python < 3.9
    ZoneInfo = None
    ZoneInfoNotFoundError = Exception

UTC = datetime.timezone.utc
PERIODS = ('hourly', 'daily', 'weekly', 'monthly', 'yearly')
COUNT_RULES = ('last',) + PERIODS
WITHIN_RULES = tuple('within_' + p for p in PERIODS)
POLICY_KEYS = tuple('keep_' + r for r in COUNT_RULES) + ('keep_within',) + tuple('keep_' + r for r in WITHIN_RULES)
DURATION_RE = re.compile(r'(\d+)([ymwdh])')


def period_key(period, when, index=None):
    """The bucket of a datetime (already in the policy's timezone) for a period."""
    if period == 'last':
        return index
    if period == 'hourly':
        return when.year * 1000000 + when.month * 10000 + when.day * 100 + when.hour
    if period == 'daily':
        return when.year * 10000 + when.month * 100 + when.day
    if period == 'weekly':
        iso = when.isocalendar()
        return iso[0] * 100 + iso[1]
    if period == 'monthly':
        return when.year * 100 + when.month
    if period == 'yearly':
        return when.year
    raise ValueError(period)


class Duration(object):
    """A calendar duration: years, months, days (calendar) and hours (exact)."""

    def __init__(self, years=0, months=0, days=0, hours=0, text=None):
        self.years, self.months, self.days, self.hours = years, months, days, hours
        self.text = text or self._format()

    def _format(self):
        out = ''.join('%d%s' % (n, u) for n, u in ((self.years, 'y'), (self.months, 'm'), (self.days, 'd'),
                                                   (self.hours, 'h')) if n)
        return out or '0h'

    def is_zero(self):
        return not (self.years or self.months or self.days or self.hours)

    def subtract_from(self, when):
        """when - duration, with Go AddDate semantics in when's timezone, then exact hours."""
        month_index = when.year * 12 + (when.month - 1) - self.years * 12 - self.months
        year, month0 = divmod(month_index, 12)
        if year < datetime.MINYEAR:
            return datetime.datetime.min.replace(tzinfo=UTC)
        first = datetime.date(year, month0 + 1, 1)
        try:
            date = first + datetime.timedelta(days=when.day - 1 - self.days)
        except OverflowError:
            return datetime.datetime.min.replace(tzinfo=UTC)
        wall = datetime.datetime.combine(date, when.timetz().replace(tzinfo=None))
        tz = when.tzinfo
        if isinstance(tz, datetime.timezone) or tz is None:
            local = wall.replace(tzinfo=tz)
        else:
            local = wall.replace(tzinfo=tz, fold=0)
        return (local.astimezone(UTC) - datetime.timedelta(hours=self.hours))

    def __repr__(self):
        return 'Duration(%s)' % self.text

    def __str__(self):
        return self.text


def parse_duration(text, where='keep_within'):
    """Parse `36h`, `7d`, `2w`, `6m`, `1y`, `1y6m` ... (y years, m months, w weeks, d days, h hours)."""
    if isinstance(text, Duration):
        return text
    if not isinstance(text, str) or not text.strip():
        raise HoldfastError("%s must be a duration such as 36h, 7d, 2w, 6m, 1y or 1y6m; got %r." % (where, text))
    compact = text.strip().replace(' ', '')
    pos = 0
    values = dict(y=0, m=0, w=0, d=0, h=0)
    for match in DURATION_RE.finditer(compact):
        if match.start() != pos:
            break
        values[match.group(2)] += int(match.group(1))
        pos = match.end()
    if pos != len(compact) or pos == 0:
        raise HoldfastError(
            "%s: cannot read duration %r; use a number followed by a unit (y years, m months, w weeks, d days, "
            "h hours), e.g. 36h, 7d, 2w, 6m, 1y6m." % (where, text))
    return Duration(years=values['y'], months=values['m'], days=values['d'] + 7 * values['w'], hours=values['h'],
                    text=compact)


def validate_policy(policy):
    """Normalise a policy mapping; raises HoldfastError on an empty or invalid one."""
    if not isinstance(policy, dict):
        raise HoldfastError("The retention policy must be a mapping of keep_* rules.")
    unknown = sorted(k for k in policy if k not in POLICY_KEYS and k != 'timezone')
    if unknown:
        raise HoldfastError("Unknown retention rule(s) %s; known rules: %s."
                            % (", ".join(unknown), ", ".join(POLICY_KEYS)))
    out = dict(counts={}, within=None, within_periods={}, timezone=None)
    for rule in COUNT_RULES:
        value = policy.get('keep_' + rule)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                if isinstance(value, bool) or float(value) != int(value):
                    raise ValueError
                value = int(value)
            except (TypeError, ValueError):
                raise HoldfastError("keep_%s must be a whole number (a positive count, or -1 for unlimited), "
                                    "got %r." % (rule, value)) from None
        if value < -1:
            raise HoldfastError("keep_%s must be a positive count or -1 for unlimited (0 turns the rule off), "
                                "got %d." % (rule, value))
        if value != 0:
            out['counts'][rule] = value
    if policy.get('keep_within') not in (None, ''):
        duration = parse_duration(policy['keep_within'])
        if not duration.is_zero():
            out['within'] = duration
    for period in PERIODS:
        value = policy.get('keep_within_' + period)
        if value not in (None, ''):
            duration = parse_duration(value, 'keep_within_' + period)
            if not duration.is_zero():
                out['within_periods'][period] = duration
    if policy.get('timezone'):
        out['timezone'] = get_timezone(policy['timezone'])
    if not out['counts'] and out['within'] is None and not out['within_periods']:
        raise HoldfastError(
            "The retention policy keeps nothing: set at least one of %s (an empty policy would remove every "
            "backup but the newest)." % ", ".join(POLICY_KEYS))
    return out


def get_timezone(name):
    if name in (None, '', 'UTC', 'utc', 'Etc/UTC'):
        return UTC
    if ZoneInfo is None:
        raise HoldfastError("timezone %r needs Python 3.9+ (zoneinfo) on the host running the policy." % name)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, KeyError):
        raise HoldfastError("Unknown timezone %r; use an IANA name such as Europe/Berlin, or UTC." % name) from None


def _aware(when, where):
    if not isinstance(when, datetime.datetime):
        raise HoldfastError("%s: the time must be a datetime, got %r." % (where, when))
    if when.tzinfo is None or when.tzinfo.utcoffset(when) is None:
        raise HoldfastError("%s: the time %s has no timezone; times must be timezone-aware." % (where, when))
    return when


def apply_policy(items, policy, now=None, time_of=None, timezone=None):
    """Split items into kept and removed.

    items: any objects; time_of(item) returns its timezone-aware datetime (default: item['time']).
    policy: a mapping of keep_* rules (validated here) or the output of validate_policy().
    now: the current time (aware); items after it are "in the future". Defaults to the real clock.
    timezone: IANA name for the period keys (overrides policy['timezone']); UTC by default.

    Returns dict(keep=[dict(item=..., reasons=[...])...], remove=[item...]), both newest first.
    """
    rules = policy if 'counts' in policy and 'within_periods' in policy else validate_policy(policy)
    tz = get_timezone(timezone) if timezone else (rules.get('timezone') or UTC)
    time_of = time_of or (lambda item: item['time'])
    now = now or datetime.datetime.now(UTC)
    timed = [(_aware(time_of(item), 'item %d' % i), item) for i, item in enumerate(items)]
    timed.sort(key=lambda pair: pair[0], reverse=True)  # stable: equal times keep their input order

    latest = None
    for when, _item in timed:
        if when < now and (latest is None or when > latest):
            latest = when
    # As restic: with no item in the past, "latest" is the zero time and every item is within any duration.
    earliest = datetime.datetime.min.replace(tzinfo=UTC)
    within_cutoff = None
    if rules['within'] is not None:
        within_cutoff = rules['within'].subtract_from(latest.astimezone(tz)) if latest is not None else earliest
    period_cutoffs = {}
    for period, duration in rules['within_periods'].items():
        period_cutoffs[period] = duration.subtract_from(latest.astimezone(tz)) if latest is not None else earliest

    counts = dict(rules['counts'])
    last_key = dict((rule, None) for rule in counts)
    last_within_key = dict((period, None) for period in period_cutoffs)
    keep, remove = [], []
    final = len(timed) - 1
    for nr, (when, item) in enumerate(timed):
        local = when.astimezone(tz)
        reasons = []
        if within_cutoff is not None and when > within_cutoff:
            reasons.append('within %s' % rules['within'])
        for rule in COUNT_RULES:
            if rule not in counts or counts[rule] == 0:
                continue
            key = period_key(rule, local, nr)
            if key != last_key[rule] or nr == final:
                last_key[rule] = key
                if counts[rule] > 0:
                    counts[rule] -= 1
                reasons.append(rule)
        for period in PERIODS:
            cutoff = period_cutoffs.get(period)
            if cutoff is None or not when > cutoff:
                continue
            key = period_key(period, local)
            if key != last_within_key[period] or nr == final:
                last_within_key[period] = key
                reasons.append('%s within %s' % (period, rules['within_periods'][period]))
        if reasons:
            keep.append(dict(item=item, reasons=reasons))
        else:
            remove.append(item)
    return dict(keep=keep, remove=remove)


def plan_backups(sound, rules, now=None):
    """The rotation's decision for one folder's sound backups (newest first, each with a 'time'): the policy, and the
    newest sound backup always stays whatever the policy says. Returns (keep, remove): keep as
    [dict(item=..., reasons=[...])], remove as the items. The local and the remote rotation both decide here."""
    plan = apply_policy(sound, rules, now=now, time_of=lambda b: b['time'])
    keep = [dict(item=e['item'], reasons=list(e['reasons'])) for e in plan['keep']]
    remove = list(plan['remove'])
    if sound and sound[0] in remove:
        remove.remove(sound[0])
        keep.insert(0, dict(item=sound[0], reasons=['newest']))
    return keep, remove


def parse_time(value, where='time'):
    """An ISO 8601 string (Z or offset; no offset means UTC), an epoch number, or a datetime -> aware datetime."""
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(('Z', 'z')):
            text = text[:-1] + '+00:00'
        # Python < 3.11 fromisoformat accepts at most 6 fraction digits.
        text = re.sub(r'(\.\d{6})\d+', r'\1', text)
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError:
            try:
                parsed = datetime.datetime.strptime(text, '%Y%m%dT%H%M%S')
            except ValueError:
                raise HoldfastError("%s: %r is not an ISO 8601 time (e.g. 2026-11-26T17:35:00Z)."
                                    % (where, value)) from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    raise HoldfastError("%s: %r is not a time (an ISO 8601 string, an epoch number or a datetime)." % (where, value))
