# -*- coding: utf-8 -*-
"""The retention policy: hand-made tables for every rule, then properties with hypothesis."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._retention import (
    apply_policy,
    parse_duration,
    parse_time,
    period_key,
    plan_backups,
    validate_policy,
)

UTC = dt.timezone.utc
NOW = dt.datetime(2030, 1, 1, tzinfo=UTC)


def t(text):
    return parse_time(text)


def items(*times):
    return [{'id': i, 'time': t(x)} for i, x in enumerate(times)]


def kept(result):
    return [e['item']['id'] for e in result['keep']]


def reasons(result):
    return dict((e['item']['id'], e['reasons']) for e in result['keep'])


def run(its, now=NOW, **policy):
    return apply_policy(its, policy, now=now)


class TestCountingRules:
    def test_keep_last(self):
        its = items('2024-01-05T00:00Z', '2024-01-04T00:00Z', '2024-01-03T00:00Z', '2024-01-02T00:00Z')
        res = run(its, keep_last=2)
        assert kept(res) == [0, 1] and [i['id'] for i in res['remove']] == [2, 3]
        assert reasons(res) == {0: ['last'], 1: ['last']}

    def test_keep_last_more_than_items_keeps_all(self):
        its = items('2024-01-05T00:00Z', '2024-01-04T00:00Z')
        assert kept(run(its, keep_last=10)) == [0, 1]

    def test_sorting_is_by_time_not_input_order(self):
        its = items('2024-01-01T00:00Z', '2024-01-03T00:00Z', '2024-01-02T00:00Z')
        assert kept(run(its, keep_last=1)) == [1]

    def test_daily_newest_per_day(self):
        its = items('2024-01-03T08:00Z', '2024-01-02T12:00Z', '2024-01-02T09:00Z', '2024-01-01T10:00Z',
                    '2024-01-01T09:00Z')
        res = run(its, keep_daily=2)
        assert kept(res) == [0, 1]

    def test_oldest_kept_while_count_left(self):
        its = items('2024-01-03T08:00Z', '2024-01-02T12:00Z', '2024-01-02T09:00Z', '2024-01-01T10:00Z',
                    '2024-01-01T09:00Z')
        res = run(its, keep_daily=5)
        # newest of each of 3 days, plus the oldest item (count left: 2)
        assert kept(res) == [0, 1, 3, 4]
        assert reasons(res)[4] == ['daily']

    def test_hourly(self):
        its = items('2024-01-01T10:59Z', '2024-01-01T10:01Z', '2024-01-01T09:30Z', '2024-01-01T07:00Z')
        assert kept(run(its, keep_hourly=2)) == [0, 2]

    def test_monthly_and_yearly(self):
        its = items('2024-03-01T00:00Z', '2024-02-29T00:00Z', '2024-02-01T00:00Z', '2023-12-31T23:59Z',
                    '2023-06-01T00:00Z', '2022-01-01T00:00Z')
        assert kept(run(its, keep_monthly=3)) == [0, 1, 3]
        assert kept(run(its, keep_yearly=2)) == [0, 3]
        assert kept(run(its, keep_yearly=10)) == [0, 3, 5]

    def test_iso_week_at_year_end(self):
        # 2020-12-31 (Thu) and 2021-01-03 (Sun) are both in ISO week 2020-53; 2021-01-04 starts 2021-01.
        assert period_key('weekly', t('2020-12-31T12:00Z')) == 202053
        assert period_key('weekly', t('2021-01-03T12:00Z')) == 202053
        assert period_key('weekly', t('2021-01-04T00:00Z')) == 202101
        assert period_key('weekly', t('2019-12-30T00:00Z')) == 202001  # Monday of week 2020-01
        its = items('2021-01-04T00:00Z', '2021-01-03T12:00Z', '2020-12-31T12:00Z', '2020-12-28T00:00Z',
                    '2020-12-27T00:00Z')
        assert kept(run(its, keep_weekly=2)) == [0, 1]
        assert kept(run(its, keep_weekly=3)) == [0, 1, 4]

    def test_one_item_satisfies_several_rules(self):
        its = items('2024-01-03T00:00Z', '2024-01-02T00:00Z', '2024-01-01T00:00Z')
        res = run(its, keep_last=1, keep_daily=2, keep_monthly=1)
        assert reasons(res)[0] == ['last', 'daily', 'monthly']
        assert reasons(res)[1] == ['daily']
        assert kept(res) == [0, 1]

    def test_unlimited(self):
        its = items('2024-01-03T10:00Z', '2024-01-03T09:00Z', '2024-01-02T10:00Z', '2024-01-01T10:00Z',
                    '2024-01-01T09:00Z')
        # one per day for all days, plus the oldest item (the rule always has count left)
        assert kept(run(its, keep_daily=-1)) == [0, 2, 3, 4]

    def test_zero_turns_rule_off(self):
        its = items('2024-01-03T00:00Z', '2024-01-02T00:00Z')
        assert kept(run(its, keep_last=1, keep_daily=0)) == [0]

    def test_ties_are_stable(self):
        its = items('2024-01-01T00:00Z', '2024-01-01T00:00Z', '2024-01-01T00:00Z')
        assert kept(run(its, keep_last=1)) == [0]
        assert kept(run(its, keep_last=2)) == [0, 1]


class TestTimezones:
    def test_dst_spring_forward_daily(self):
        # Europe/Berlin switches 2021-03-28 02:00 CET -> 03:00 CEST.
        its = items('2021-03-28T01:30Z', '2021-03-27T23:30Z', '2021-03-27T22:30Z')
        assert kept(run(its, keep_daily=2)) == [0, 1]  # UTC: days 28, 27
        assert kept(apply_policy(its, dict(keep_daily=2), now=NOW, timezone='Europe/Berlin')) == [0, 2]

    def test_dst_fall_back_hourly(self):
        # 2021-10-31 02:15 happens twice in Berlin: 00:15Z (CEST) and 01:15Z (CET): one local hour.
        its = items('2021-10-31T01:15Z', '2021-10-31T00:15Z', '2021-10-30T23:15Z')
        assert kept(run(its, keep_hourly=2)) == [0, 1]
        assert kept(apply_policy(its, dict(keep_hourly=2, timezone='Europe/Berlin'), now=NOW)) == [0, 2]

    def test_unknown_timezone(self):
        with pytest.raises(HoldfastError, match='Unknown timezone'):
            validate_policy(dict(keep_last=1, timezone='Mars/Olympus'))


class TestWithin:
    def test_within_is_strict_and_relative_to_latest(self):
        its = items('2024-01-10T00:00Z', '2024-01-08T00:00:01Z', '2024-01-08T00:00Z', '2024-01-01T00:00Z')
        res = run(its, keep_within='2d')
        assert kept(res) == [0, 1]
        assert reasons(res)[0] == ['within 2d']

    def test_hours_and_weeks(self):
        its = items('2024-01-15T12:00Z', '2024-01-14T00:00:01Z', '2024-01-01T12:00:01Z', '2024-01-01T12:00Z')
        assert kept(run(its, keep_within='36h')) == [0, 1]
        assert kept(run(its, keep_within='2w')) == [0, 1, 2]

    def test_month_end_arithmetic(self):
        # 31 March minus 1 month is "31 February", normalised to 3 March (2 March in a leap year), like Go.
        assert parse_duration('1m').subtract_from(t('2021-03-31T00:00Z')) == t('2021-03-03T00:00Z')
        assert parse_duration('1m').subtract_from(t('2024-03-31T00:00Z')) == t('2024-03-02T00:00Z')
        its = items('2021-03-31T00:00Z', '2021-03-03T00:00:01Z', '2021-03-03T00:00Z', '2021-02-28T00:00Z')
        assert kept(run(its, keep_within='1m')) == [0, 1]

    def test_leap_year(self):
        assert parse_duration('1y').subtract_from(t('2024-02-29T12:00Z')) == t('2023-03-01T12:00Z')
        assert parse_duration('4y').subtract_from(t('2024-02-29T12:00Z')) == t('2020-02-29T12:00Z')
        its = items('2024-02-29T12:00Z', '2023-03-01T12:00:01Z', '2023-03-01T12:00Z')
        assert kept(run(its, keep_within='1y')) == [0, 1]

    def test_combined_duration(self):
        assert parse_duration('1y6m').subtract_from(t('2024-08-15T00:00Z')) == t('2023-02-15T00:00Z')
        assert parse_duration('1y5m7d2h').subtract_from(t('2024-08-15T00:00Z')) == t('2023-03-07T22:00Z')

    def test_future_items(self):
        now = t('2026-01-10T00:00Z')
        its = items('2026-01-20T00:00Z', '2026-01-09T00:00Z', '2026-01-05T00:00Z', '2026-01-01T00:00Z')
        # latest is the newest item not in the future: 01-09; cutoff 01-04
        assert kept(run(its, now=now, keep_within='5d')) == [0, 1, 2]

    def test_all_items_in_future_are_within(self):
        now = t('2020-01-01T00:00Z')
        its = items('2026-01-20T00:00Z', '2026-01-09T00:00Z')
        assert kept(run(its, now=now, keep_within='1d')) == [0, 1]

    def test_within_daily(self):
        its = items('2024-01-10T10:00Z', '2024-01-10T08:00Z', '2024-01-09T10:00Z', '2024-01-08T10:00Z',
                    '2024-01-08T09:00Z', '2024-01-01T00:00Z')
        res = run(its, keep_within_daily='2d6h')
        # within: after 2024-01-08T04:00 -> newest of days 10, 9, 8
        assert kept(res) == [0, 2, 3]
        assert reasons(res)[0] == ['daily within 2d6h']

    def test_within_period_keeps_oldest_when_within(self):
        its = items('2024-01-10T10:00Z', '2024-01-10T08:00Z')
        assert kept(run(its, keep_within_daily='7d')) == [0, 1]


class TestValidation:
    @pytest.mark.parametrize('policy, match', [
        ({}, 'keeps nothing'),
        (dict(keep_last=0), 'keeps nothing'),
        (dict(keep_daily=-2), 'positive count or -1'),
        (dict(keep_daily='many'), 'whole number'),
        (dict(keep_daily=True), 'whole number'),
        (dict(keep_daily=1.5), 'whole number'),
        (dict(keep_within='7x'), 'cannot read duration'),
        (dict(keep_within='7'), 'cannot read duration'),
        (dict(keep_within='d7'), 'cannot read duration'),
        (dict(keep_within=7), 'must be a duration'),
        (dict(keep_dayly=7), 'Unknown retention rule'),
    ])
    def test_errors(self, policy, match):
        with pytest.raises(HoldfastError, match=match):
            validate_policy(policy)

    def test_string_counts_are_accepted(self):
        assert validate_policy(dict(keep_daily='7'))['counts'] == {'daily': 7}

    def test_naive_time_rejected(self):
        with pytest.raises(HoldfastError, match='timezone-aware'):
            apply_policy([{'time': dt.datetime(2024, 1, 1)}], dict(keep_last=1), now=NOW)

    def test_parse_time(self):
        assert parse_time('2024-01-01T00:00:00Z') == dt.datetime(2024, 1, 1, tzinfo=UTC)
        assert parse_time('2024-01-01T01:00:00+01:00') == dt.datetime(2024, 1, 1, tzinfo=UTC)
        assert parse_time('2024-01-01 00:00:00') == dt.datetime(2024, 1, 1, tzinfo=UTC)
        assert parse_time('20240101T000000') == dt.datetime(2024, 1, 1, tzinfo=UTC)
        assert parse_time('2024-01-01T00:00:00.123456789Z').microsecond == 123456
        assert parse_time(0) == dt.datetime(1970, 1, 1, tzinfo=UTC)
        with pytest.raises(HoldfastError):
            parse_time('yesterday')


# ---------------------------------------------------------------------------------------------- properties
times = st.datetimes(min_value=dt.datetime(2015, 1, 1), max_value=dt.datetime(2031, 12, 31),
                     timezones=st.just(UTC))
counts = st.one_of(st.none(), st.just(-1), st.integers(min_value=1, max_value=12))
durations = st.one_of(st.none(), st.builds(lambda n, u: '%d%s' % (n, u), st.integers(1, 30),
                                           st.sampled_from('ymwdh')))
policies = st.fixed_dictionaries({
    'keep_last': counts, 'keep_hourly': counts, 'keep_daily': counts, 'keep_weekly': counts,
    'keep_monthly': counts, 'keep_yearly': counts, 'keep_within': durations, 'keep_within_daily': durations,
    'keep_within_monthly': durations,
}).map(lambda d: dict((k, v) for k, v in d.items() if v is not None)).filter(bool)
item_lists = st.lists(times, min_size=1, max_size=40).map(lambda ts: [{'id': i, 'time': x} for i, x in enumerate(ts)])
tzs = st.sampled_from([None, 'Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe'])


@settings(max_examples=300, deadline=None)
@given(item_lists, policies, tzs)
def test_newest_always_kept_and_partition(its, policy, tz):
    res = apply_policy(its, policy, now=NOW, timezone=tz)
    ids = sorted(kept(res) + [i['id'] for i in res['remove']])
    assert ids == sorted(i['id'] for i in its)  # partition: nothing lost, nothing twice
    newest = sorted(its, key=lambda i: i['time'], reverse=True)[0]
    assert newest['id'] in kept(res)
    assert all(e['reasons'] for e in res['keep'])


@settings(max_examples=300, deadline=None)
@given(item_lists, policies, st.sampled_from(['keep_last', 'keep_hourly', 'keep_daily', 'keep_weekly',
                                              'keep_monthly', 'keep_yearly']), st.integers(1, 5), tzs)
def test_monotonic_in_counts(its, policy, rule, extra, tz):
    before = set(kept(apply_policy(its, policy, now=NOW, timezone=tz)))
    raised = dict(policy)
    current = raised.get(rule)
    if current == -1:
        return
    raised[rule] = (current or 0) + extra
    after = set(kept(apply_policy(its, raised, now=NOW, timezone=tz)))
    assert before <= after
    unlimited = dict(policy)
    unlimited[rule] = -1
    assert before <= set(kept(apply_policy(its, unlimited, now=NOW, timezone=tz)))


@settings(max_examples=300, deadline=None)
@given(item_lists, st.sampled_from(['hourly', 'daily', 'weekly', 'monthly', 'yearly']), tzs)
def test_unlimited_keeps_one_per_period(its, period, tz):
    from ansible_collections.holdfast.volumes.plugins.module_utils._retention import get_timezone
    zone = get_timezone(tz)
    res = apply_policy(its, {'keep_' + period: -1}, now=NOW, timezone=tz)

    def key(item):
        return period_key(period, item['time'].astimezone(zone))
    kept_items = [e['item'] for e in res['keep']]
    assert set(key(i) for i in kept_items) == set(key(i) for i in its)
    oldest = sorted(its, key=lambda i: i['time'], reverse=True)[-1]
    per_key = {}
    for item in kept_items:
        per_key.setdefault(key(item), []).append(item)
    for k, group in per_key.items():
        # exactly one per period; the oldest item may be the one extra (restic keeps it while counts are left)
        assert len(group) == 1 or (len(group) == 2 and oldest in group and k == key(oldest))


@settings(max_examples=200, deadline=None)
@given(item_lists, policies)
def test_plan_backups_keeps_the_first_sound_backup_whatever_the_policy(its, policy):
    """The local and the remote rotation decide with plan_backups: their first (newest listed) sound backup stays
    even where the policy alone would drop it (here: the list's first is not the newest by time)."""
    sound = sorted(its, key=lambda i: i['time'])  # oldest first: the policy keeps the last, not the first
    keep, remove = plan_backups(sound, validate_policy(policy), now=NOW)
    assert sound[0] in [e['item'] for e in keep] and sound[0] not in remove
    assert sorted(i['id'] for i in [e['item'] for e in keep] + remove) == sorted(i['id'] for i in its)


def test_plan_backups_names_the_rule_newest():
    old, new = {'id': 0, 'time': NOW - dt.timedelta(days=2)}, {'id': 1, 'time': NOW - dt.timedelta(days=1)}
    keep, remove = plan_backups([old, new], validate_policy({'keep_last': 1}), now=NOW)
    assert keep == [{'item': old, 'reasons': ['newest']}, {'item': new, 'reasons': ['last']}] \
        and remove == []
