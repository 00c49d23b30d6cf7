"""The pure pipeline steps, with "now" fixed: dates, slots, extraction, scoring, A/B buckets."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from kabar.ari.booking import Pattern, available_slots, match_request, pick_number, seat_key
from kabar.ari.dates import JAKARTA, parse_when
from kabar.ari.extract import detect_country, extract, parse_yes_no
from kabar.ari.llm import Target, bucket, choose_target, parse_extraction
from kabar.ari.scoring import Weights, score_lead

# Wednesday 4 February 2026, 10:00 WIB.
NOW = datetime(2026, 2, 4, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("phrase", "day", "hour", "minute", "period"),
    [
        ("besok", date(2026, 2, 5), None, 0, None),
        ("lusa", date(2026, 2, 6), None, 0, None),
        ("hari Senin", date(2026, 2, 9), None, 0, None),
        ("Jum'at", date(2026, 2, 6), None, 0, None),
        ("jumat depan", date(2026, 2, 13), None, 0, None),
        ("senin depan jam 2 siang", date(2026, 2, 9), 14, 0, None),
        ("tanggal 5", date(2026, 2, 5), None, 0, None),
        ("tanggal 3", date(2026, 3, 3), None, 0, None),  # the 3rd has passed: next month
        ("jam 10 pagi", None, 10, 0, None),
        ("sore", None, None, 0, "sore"),
        ("besok jam 7 malam", date(2026, 2, 5), 19, 0, None),
        ("setengah 3 sore", None, 14, 30, None),
        ("kamis jam 14.30", date(2026, 2, 5), 14, 30, None),
        ("5 Februari", date(2026, 2, 5), None, 0, None),
        ("10 maret jam 14:00", date(2026, 3, 10), 14, 0, None),
        ("hari minggu", date(2026, 2, 8), None, 0, None),
        ("rabu", date(2026, 2, 11), None, 0, None),  # today is Wednesday: the next one
        ("ok sip", None, None, 0, None),
    ],
)
def test_indonesian_day_and_time(phrase, day, hour, minute, period):
    when = parse_when(phrase, NOW)
    assert (when.day, when.hour, when.minute, when.period) == (day, hour, minute, period)


def test_minggu_depan_means_next_week_not_sunday():
    when = parse_when("minggu depan", NOW)
    assert when.day is None and when.week_offset == 1


def test_late_evening_utc_is_already_tomorrow_in_jakarta():
    # 18:00 UTC on Feb 4 is 01:00 WIB on Thursday Feb 5: "besok" is Friday.
    assert parse_when("besok", datetime(2026, 2, 4, 18, 0, tzinfo=UTC)).day == date(2026, 2, 6)


PATTERNS = [Pattern("mon", 0, "13:00", "16:00", 60), Pattern("wed", 2, "09:00", "11:00", 60)]


def test_slots_from_weekly_patterns_in_jakarta():
    slots = available_slots(PATTERNS, set(), NOW)
    local = [s.local().strftime("%a %d %H:%M") for s in slots]
    # Today (Wednesday) is excluded; 14-day window.
    assert local[:5] == ["Mon 09 13:00", "Mon 09 14:00", "Mon 09 15:00", "Wed 11 09:00", "Wed 11 10:00"]
    assert len(slots) == 10
    assert slots[1].start == datetime(2026, 2, 9, 7, 0, tzinfo=UTC)  # 14:00 WIB = 07:00 UTC


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("senin depan jam 2 siang", datetime(2026, 2, 9, 14, 0, tzinfo=JAKARTA)),
        ("hari senin sore", None),  # no Monday slot from 15:00 to 18:00 except 15:00
        ("rabu jam 10 pagi", datetime(2026, 2, 11, 10, 0, tzinfo=JAKARTA)),
        ("tanggal 16 jam 15:00", datetime(2026, 2, 16, 15, 0, tzinfo=JAKARTA)),
        ("lusa", None),  # Friday: no slots that day
    ],
)
def test_phrase_to_the_right_slot(phrase, expected):
    slots = available_slots(PATTERNS, set(), NOW)
    match = match_request(parse_when(phrase, NOW), slots, NOW)
    if phrase == "hari senin sore":
        assert match.slot is not None and match.slot.local().hour == 15
    elif expected is None:
        assert match.slot is None and match.day == date(2026, 2, 6) and not match.day_slots
    else:
        assert match.slot is not None and match.slot.start == expected


def test_taken_seat_is_not_offered_and_capacity_counts():
    slots = available_slots(PATTERNS, set(), NOW)
    first = slots[0]
    taken = {seat_key(first.slot_id, first.start, 0)}
    assert first not in available_slots(PATTERNS, taken, NOW)
    two_seats = [Pattern("mon", 0, "13:00", "14:00", 60, max_bookings_per_slot=2)]
    assert len(available_slots(two_seats, taken, NOW)) == 2  # one seat left on each of two Mondays


def test_pick_a_listed_slot_by_number():
    slots = available_slots(PATTERNS, set(), NOW)[:3]
    assert pick_number("2", slots) == slots[1]
    assert pick_number("nomor 3", slots) == slots[2]
    assert pick_number("pilih 1 aja", slots) == slots[0]
    assert pick_number("4", slots) is None
    assert pick_number("jam 2", slots) is None


@pytest.mark.parametrize(
    ("text", "country"),
    [
        ("berapa biaya kuliah di australia?", "Australia"),  # not "us" inside australia
        ("mau kuliah di kanada", "Canada"),  # not "au" inside "mau"
        ("pengen ke UK atau Inggris", "United Kingdom"),
        ("bahasa inggris saya lumayan", None),  # a language, not a country
        ("kuliah di Amerika Serikat", "United States"),
        ("mau ke new zealand", "New Zealand"),
        ("halo kak", None),
    ],
)
def test_country_detection_uses_word_boundaries(text, country):
    assert detect_country(text) == country


@pytest.mark.parametrize(
    ("text", "answer"),
    [("sudah punya", True), ("tidak ada", False), ("gak punya", False), ("belum ada kak", False), ("ada", True), ("hmm", None)],
)
def test_document_answers_check_negatives_first(text, answer):
    assert parse_yes_no(text) is answer


def test_extraction_reads_answers_in_context():
    assert extract("Budi Santoso", "name").fields == {"name": "Budi Santoso"}
    assert extract("Budi Santoso").fields == {}  # a bare name means nothing unasked
    assert extract("300", "budget").fields == {"budget": "300 juta"}
    assert extract("6.5", "english_level").fields == {"english_level": "IELTS 6.5", "ielts_score": "6.5"}
    e = extract("paspor sudah ada tapi IELTS belum")
    assert e.documents == {"passport": True, "english_test": False}
    e = extract("nama saya Sari, mau S2 jurusan bisnis di Jepang tahun depan, budget 200 juta, email sari@contoh.id")
    assert e.fields == {
        "name": "Sari",
        "email": "sari@contoh.id",
        "country": "Japan",
        "budget": "200 juta",
        "timeline": "tahun depan",
        "program": "S2 bisnis",
    }
    assert extract("saya mau ngobrol sama konsultan aja").wants_human


FULL = {"name": "Budi", "email": "budi@contoh.id", "english_level": "IELTS 7.0", "budget": "50 juta", "timeline": "6 bulan", "country": "Australia"}
ALL_DOCS = {"passport": True, "cv": True, "english_test": True, "transcript": True}


def test_scoring_vectors_of_the_original():
    empty = score_lead({}, {}, None, year=2026)
    assert (empty.total, empty.temperature) == (5, "cold")
    full = score_lead(FULL, ALL_DOCS, None, year=2026)
    assert full.breakdown == {"basic_score": 25, "qualification_score": 33, "document_score": 30, "engagement_score": 5, "total": 93}
    assert full.temperature == "hot"
    far = score_lead({"timeline": "2 tahun lagi"}, {}, None, year=2026)
    assert far.breakdown["qualification_score"] == 0
    assert far.total == 3 + 0 + 0 + 5
    assert score_lead({"timeline": "2028"}, {}, None, year=2026).breakdown["qualification_score"] == 0
    assert score_lead({"timeline": "2027"}, {}, None, year=2026).breakdown["qualification_score"] == 10
    # Rounding is half-up: 1 of 6 fields → 2.5 → 3.
    assert score_lead({"name": "x"}, {}, 0, year=2026).total == 3


def test_scoring_uses_configured_weights_and_thresholds():
    # Documents count for nothing, basic data for half: full form, all documents.
    weights = Weights(basic=50, qualification=40, documents=0, engagement=10, hot_threshold=90, warm_threshold=60)
    score = score_lead(FULL, ALL_DOCS, None, weights=weights, year=2026)
    assert score.breakdown["basic_score"] == 50
    assert score.breakdown["document_score"] == 0
    assert score.breakdown["qualification_score"] == pytest.approx(33 * 40 / 35, abs=0.05)
    assert score.total == round(50 + 33 * 40 / 35 + 5)  # 93
    assert score.temperature == "hot"
    assert score_lead(FULL, {}, None, weights=weights, year=2026).temperature == "hot"  # documents don't matter here
    low = score_lead({"name": "x"}, {}, None, weights=weights, year=2026)
    assert low.temperature == "cold" and low.total < 60


@pytest.mark.parametrize(
    ("key", "value"),
    [("abc-123", 99), ("25de3c4e-b9ca-4aff-9639-b35668f0a48e", 68), ("0318fda5-22c4-419b-bdd8-04471b818d17", 30), ("k57abc123def456", 31)],
)
def test_ab_bucket_vectors(key, value):
    assert bucket(key) == value


def test_ab_split_is_deterministic_by_contact():
    llm = {"provider": "custom", "base_url": "http://127.0.0.1:1/v1", "model": "a-model", "ab_split": 50, "alternate": {"model": "b-model", "provider": "custom", "base_url": "http://127.0.0.1:2"}}
    keys = {"api_key": "ka", "alternate_api_key": "kb"}
    a = choose_target(llm, keys, "0318fda5-22c4-419b-bdd8-04471b818d17")  # bucket 30 < 50
    b = choose_target(llm, keys, "25de3c4e-b9ca-4aff-9639-b35668f0a48e")  # bucket 68
    assert (a.arm, a.model, a.api_key, a.url) == ("a", "a-model", "ka", "http://127.0.0.1:1/v1/chat/completions")
    assert (b.arm, b.model, b.api_key, b.url) == ("b", "b-model", "kb", "http://127.0.0.1:2/v1/chat/completions")
    assert choose_target({**llm, "ab_split": 100}, keys, "abc-123").arm == "a"
    assert choose_target({}, keys, "abc-123") is None
    assert Target("a", "grok", "https://api.x.ai/v1", "grok-3", None).url == "https://api.x.ai/v1/chat/completions"


def test_llm_extraction_is_validated():
    out = parse_extraction('Sure! {"name": "Sari", "email": "not-an-email", "country": "jepang", "budget": null, "ielts_score": 7, "documents": {"passport": true, "cv": "yes"}, "wants_human": false}')
    assert out.fields == {"name": "Sari", "country": "Japan", "ielts_score": "7"}
    assert out.documents == {"passport": True}
