"""Benchmark (not a test): every analytics dashboard page over a year of a large plan on PostgreSQL.

    .venv/bin/python tools/bench_analytics.py [--cards 5000000] [--feedback 500000] [--rounds 3]
        [--url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--keep]

Fills a private schema (dropped afterwards unless --keep) with `--cards` issued cards spread over 365 days
(four services, six service × topic pairs, five EHRs, three content versions, 4,000 clinicians, two days a week busier
than others, one topic stopping on day 300) and `--feedback` feedback entries (every n-th card: accepted,
overridden with a reason, some with a comment), generated inside PostgreSQL (INSERT … SELECT over
generate_series, so nothing crosses the wire); the daily counts (card_days, call_days, clinician_days) are
aggregated from the rows as the recorder would have kept them. Then times each page through the Flask test
client (development settings on that schema): the dashboard's default (the last 90 days) and the whole year,
`--rounds` times each after one warm-up, and prints the median and the slowest against the target of 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cds_service.app import create_app  # noqa: E402
from cds_service.pipeline.clock import FixedClock  # noqa: E402
from cds_service.settings import Settings  # noqa: E402
from cds_service.storage.database import Storage  # noqa: E402
from cds_service.wiring import services_of  # noqa: E402

TARGET_SECONDS = 1.0
LAST_DAY = date(2026, 11, 30)
PAGES = ("", "/outcomes", "/overrides", "/timing", "/versions")

# (service, hook, topic, judgement) by index; the topic of index 3 stops firing on day 300.
FILL_CARDS = """
INSERT INTO issued_cards (card_uuid, service_id, topic, content_version, issued_at, hook, issuer, tenant,
                          judgement, clinician_key, clinician_key_id, suggestion_kinds)
SELECT md5(n::text || 'card')::uuid::text,
       (ARRAY['lbp-referral-select','lbp-referral-select','lbp-referral-sign','lbp-referral-sign',
              'lbp-patient-view','lbp-appointment-book'])[k + 1],
       (ARRAY['msc-evaluation-first','prior-notification-required','msc-evaluation-first',
              'opioid-sparing-alternatives','physical-therapy-first-line','prior-notification-required'])[k + 1],
       CASE WHEN d < 120 THEN 'v1' WHEN d < 240 THEN 'v2' ELSE 'v3' END,
       CAST(:first AS timestamp) + d * interval '1 day' + interval '13 hours' + (n % 36000) * interval '1 second',
       (ARRAY['order-select','order-select','order-sign','order-sign','patient-view','appointment-book'])[k + 1],
       'https://ehr-' || (n % 5) || '.bench.invalid', 'tenant-' || (n % 5),
       (ARRAY['msc-applies','exempt-medicare-advantage','msc-applies','opioid-sparing','pt-first-line',
              'pn-missing'])[k + 1],
       md5((n % 4000)::text || 'clinician'), 'bench',
       CASE WHEN k IN (0, 2) THEN json_build_object(md5(n::text || 's'), 'msc-swap')
            WHEN k IN (3, 4) THEN json_build_object(md5(n::text || 's'), 'pt-referral') ELSE '{}'::json END
FROM (
  SELECT n,
         -- a weekly pattern: two days of each week draw extra cards
         (CASE WHEN (n % 7) < 5 THEN (n * 7919) % 365 ELSE ((n * 104729) % 52) * 7 + 5 + n % 2 END) % 365 AS d,
         (n * 31) % 6 AS k
  FROM generate_series(CAST(1 AS bigint), :cards) AS n
) AS drawn
WHERE NOT (k = 3 AND d >= 300)
"""

FILL_FEEDBACK = """
INSERT INTO feedback (service_id, card_uuid, topic, outcome, accepted_suggestions, override_code, override_system,
                      override_display, user_comment, outcome_timestamp, received_at, issuer, tenant,
                      accepted_kind, card_issued_at, content_version, comment_read_at, first_of_card,
                      first_of_outcome)
SELECT c.service_id, c.card_uuid, c.topic,
       CASE WHEN r < 30 THEN 'accepted' ELSE 'overridden' END,
       '[]'::json,
       CASE WHEN r >= 30 THEN (ARRAY['msc-evaluation-done','does-not-align-preferences','cds-not-applicable',
                                     'other'])[r % 4 + 1] END,
       CASE WHEN r >= 30 THEN 'http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes' END,
       CASE WHEN r >= 30 THEN (ARRAY['MSC evaluation already done','Patient declines','Does not apply','Other'])
                              [r % 4 + 1] END,
       CASE WHEN r >= 95 THEN 'bench comment ' || r END,
       c.issued_at + (r * r) * interval '1 second', c.issued_at + (r * r + 2) * interval '1 second',
       c.issuer, c.tenant,
       CASE WHEN r < 30 THEN (SELECT value FROM json_each_text(c.suggestion_kinds) LIMIT 1) END,
       c.issued_at, c.content_version, NULL, true, true
FROM (SELECT *, abs(hashtext(card_uuid)) % 100 AS r FROM issued_cards WHERE issuer <> 'https://ehr-4.bench.invalid')
     AS c
WHERE abs(hashtext(c.card_uuid || 'f')) % :every = 0
LIMIT :feedback
"""

FILL_COUNTS = (
    """INSERT INTO card_days SELECT issued_at::date, service_id, topic, hook, content_version, judgement,
              issuer, tenant, count(*) FROM issued_cards GROUP BY 1, 2, 3, 4, 5, 6, 7, 8""",
    # Hook calls: about 2.5 per card of the service that day (most calls issue none).
    """INSERT INTO call_days SELECT issued_at::date, service_id, hook, content_version, issuer, tenant,
              ceil(count(*) * 2.5) FROM issued_cards GROUP BY 1, 2, 3, 4, 5, 6""",
    """INSERT INTO clinician_days SELECT issued_at::date, clinician_key, issuer, tenant, count(*)
              FROM issued_cards GROUP BY 1, 2, 3, 4""",
)


def fill(url: str, cards: int, feedback: int) -> None:
    engine = create_engine(url)
    first = LAST_DAY - timedelta(days=364)
    with engine.begin() as connection:
        started = time.perf_counter()
        connection.execute(text(FILL_CARDS), {"first": first, "cards": cards})
        print(f"  {cards:,} issued cards drawn in {time.perf_counter() - started:.0f} s", flush=True)
        started = time.perf_counter()
        every = max(1, round(cards * 0.8 / feedback))  # the EHR that sends none holds a fifth of the cards
        connection.execute(text(FILL_FEEDBACK), {"every": every, "feedback": feedback})
        for statement in FILL_COUNTS:
            connection.execute(text(statement))
        print(f"  feedback and daily counts in {time.perf_counter() - started:.0f} s", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
        counts = {
            table: connection.scalar(text(f"SELECT count(*) FROM {table}"))
            for table in ("issued_cards", "feedback", "card_days", "call_days", "clinician_days")
        }
    print("  rows: " + ", ".join(f"{table} {n:,}" for table, n in counts.items()), flush=True)
    engine.dispose()


def time_pages(url: str, rounds: int) -> list[tuple[str, str, float, float]]:
    settings = Settings(database_url=url, require_jwt=False, content_reload_seconds=0)
    app = create_app(settings, clock=FixedClock(LAST_DAY))
    client = app.test_client()
    year = f"from={LAST_DAY - timedelta(days=364)}&to={LAST_DAY}"
    results = []
    for period, query in (("last 90 days", ""), ("whole year", year)):
        for page in PAGES:
            path = f"/analytics{page}?{query}"
            assert client.get(path).status_code == 200, path  # warm-up (and vl-convert's first start)
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                response = client.get(path)
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, path
            results.append((page or "/ (firing)", period, statistics.median(times), max(times)))
            print(
                f"  {page or '/ (firing)':<12} {period:<13} median {results[-1][2]:.3f} s, max {results[-1][3]:.3f} s",
                flush=True,
            )
    services_of(app).close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cards", type=int, default=5_000_000)
    parser.add_argument("--feedback", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keep", action="store_true", help="keep the schema (its name is printed)")
    args = parser.parse_args()
    schema = f"lbp_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(args.url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    try:
        print(f"schema {schema}: migrating and filling", flush=True)
        storage = Storage(url)
        storage.migrate()
        storage.close()
        fill(url, args.cards, args.feedback)
        print("timing each page (Flask test client, development settings):", flush=True)
        results = time_pages(url, args.rounds)
        print("\n| Page | Period | Median (s) | Slowest (s) | Target |\n|---|---|---|---|---|")
        for page, period, median, slowest in results:
            verdict = "ok" if slowest < TARGET_SECONDS else "over"
            print(f"| {page} | {period} | {median:.3f} | {slowest:.3f} | < {TARGET_SECONDS:g} s: {verdict} |")
    finally:
        if not args.keep:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
