"""Collect page-50 paths of long post lists from a running charpente server, for R3.

    python bench/cursors.py --base http://127.0.0.1:8101 --out PATHS.txt

Walks each list 49 pages through `page.next_cursor` (keyset pagination) and writes the
path of its 50th page, cursor included: R3 then requests those paths at random. The
lists are every post newest first, and every post older than one of a set of dates,
newest first (each date gives a different page 50). Bounded: at most 49 requests per
list, 10 s per request.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PAGE = 50
LIMIT = 20
FIRST_DAY = dt.date(2024, 7, 5)  # seeded posts run from 2024-06-29 to 2024-12-31
N_DATES = 24


def list_queries() -> list[dict[str, str]]:
    queries = [{"sort": "-created_at", "limit": str(LIMIT)}]
    for n in range(N_DATES):
        day = FIRST_DAY + dt.timedelta(days=7 * n)
        queries.append(
            {
                "filter": f'created_at < "{day.isoformat()}T00:00:00Z"',
                "sort": "-created_at",
                "limit": str(LIMIT),
            }
        )
    return queries


def page_path(query: dict[str, str], cursor: str | None = None) -> str:
    params = dict(query, cursor=cursor) if cursor else query
    return "/v1/posts?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def fetch_page(base: str, path: str) -> dict[str, object]:
    with urllib.request.urlopen(base + path, timeout=10) as response:  # base is 127.0.0.1
        return json.loads(response.read())  # type: ignore[no-any-return]


def page_50(base: str, query: dict[str, str]) -> str | None:
    """The path of the list's 50th page, or None when the list is shorter or refused."""
    cursor = None
    for _ in range(PAGE - 1):
        try:
            body = fetch_page(base, page_path(query, cursor))
        except urllib.error.HTTPError as err:
            print(f"cursors: {page_path(query)} answered {err.code}", file=sys.stderr)
            return None
        page = body.get("page")
        cursor = page.get("next_cursor") if isinstance(page, dict) else None
        if not cursor:
            return None
    return page_path(query, cursor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    paths = [p for q in list_queries() if (p := page_50(args.base, q)) is not None]
    if not paths:
        sys.exit("cursors: no list reached page 50")
    args.out.write_text("".join(f"{p}\n" for p in paths))
    print(f"cursors: {len(paths)} page-{PAGE} paths from {len(list_queries())} lists")


if __name__ == "__main__":
    main()
