"""Seed the benchmark database with the 'social' workload, deterministically.

    python bench/seed.py --ids DIR        # seed unless already seeded, then write id lists
    python bench/seed.py --force --ids DIR  # empty the tables and seed again
    python bench/seed.py --reset          # undo what a benchmark run changed

10,000 accounts (role member, each with the password in password.txt), 100,000 posts
(150-250-byte bodies; 80% public, 15% followers, 5% private), 50,000 random follows, and
1,000 more follows for each of the first 64 accounts (the members the benchmark signs in),
from random.Random(SEED): the same rows on every machine and every run. Ids are UUIDv7
made from the row's created_at and the seeded generator, so they stay time-ordered.
Counters (follower_count, following_count, post_count) match the rows; like, comment
and share counts are 0 because no likes, comments or shares are seeded.
Passwords go to charpente_passwords: one argon2id hash made by charpente's own hasher
(same parameters as the server's, so a login never rehashes), shared by every account.
The tables must exist already (`charpente migrate apply`); this script only fills them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from charpente.runtime.passwords import PasswordHasher

DSN = "postgresql://postgres@127.0.0.1:5432/charpente_bench"
SEED = 20240601
N_ACCOUNTS = 10_000
N_POSTS = 100_000
N_RANDOM_FOLLOWS = 50_000
N_MEMBERS = 64  # the first accounts: the benchmark signs them in for its token pool
MEMBER_FOLLOWS = 1_000  # authors each member follows (10%): the followers rule finds some
N_FOLLOWS = N_RANDOM_FOLLOWS + N_MEMBERS * MEMBER_FOLLOWS
PASSWORD = "bench-sign-in-4817"  # every seeded account's password (public benchmark data)
W2_POOL = 20_000  # posts W2 patches (the first ones generated)
BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
SEED_END = BASE + dt.timedelta(days=366)  # every seeded row is older than this

WORDS = (  # noqa: SIM905 (the reference seed's word list, kept as written)
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud "
    "exercitation ullamco laboris nisi aliquip ex ea commodo consequat duis aute irure "
    "in reprehenderit voluptate velit esse cillum fugiat nulla pariatur excepteur sint "
    "occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est"
).split()

ACCOUNT_COLUMNS = [
    "id",
    "handle",
    "email",
    "role",
    "email_verified",
    "disabled",
    "display_name",
    "bio",
    "follower_count",
    "following_count",
    "post_count",
    "created_at",
    "updated_at",
    "version",
]
POST_COLUMNS = [
    "id",
    "author",
    "body",
    "visibility",
    "like_count",
    "comment_count",
    "share_count",
    "created_at",
    "updated_at",
    "version",
]
FOLLOW_COLUMNS = ["id", "follower", "followee", "created_at", "updated_at", "version"]
PASSWORD_COLUMNS = ["account", "hash", "changed_at"]
TABLES = {
    "accounts": ACCOUNT_COLUMNS,
    "posts": POST_COLUMNS,
    "follows": FOLLOW_COLUMNS,
    "charpente_passwords": PASSWORD_COLUMNS,
}
# What a run leaves in the engine's own tables: sign-ins add refresh tokens and log lines,
# writes add events to the audit history and (posts) to the outbox. The seed writes none.
RUN_TABLES = ("charpente_refresh_tokens", "charpente_auth_log")
EVENT_TABLES = ("charpente_events", "charpente_outbox")  # absent from an older database


@dataclass
class Dataset:
    accounts: list[tuple[object, ...]]
    posts: list[tuple[object, ...]]
    follows: list[tuple[object, ...]]

    @property
    def members(self) -> list[tuple[object, ...]]:
        """The accounts the benchmark signs in (the first N_MEMBERS)."""
        return self.accounts[:N_MEMBERS]


def uuid7(rng: random.Random, when: dt.datetime) -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix milliseconds, then version, variant and seeded random bits."""
    ms = int(when.timestamp() * 1000)
    rand_a, rand_b = rng.getrandbits(12), rng.getrandbits(62)
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)


def body_text(rng: random.Random, target: int = 200) -> str:
    out, n = [], 0
    while n < target:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:target]


def _accounts(rng: random.Random) -> Iterator[tuple[uuid.UUID, int, dt.datetime]]:
    for i in range(1, N_ACCOUNTS + 1):
        created = BASE + dt.timedelta(seconds=rng.randint(0, 180 * 86400))
        yield uuid7(rng, created), i, created


def _posts(rng: random.Random, authors: list[uuid.UUID]) -> Iterator[tuple[object, ...]]:
    vis = ["public"] * 16 + ["followers"] * 3 + ["private"]
    for _ in range(N_POSTS):
        author = authors[rng.randrange(N_ACCOUNTS)]
        created = BASE + dt.timedelta(seconds=rng.randint(180 * 86400, 365 * 86400))
        body = body_text(rng, rng.randint(150, 250))
        yield (uuid7(rng, created), author, body, rng.choice(vis), 0, 0, 0, created, created, 1)


def _follows(rng: random.Random, ids: list[uuid.UUID]) -> Iterator[tuple[object, ...]]:
    """50,000 random follows, then MEMBER_FOLLOWS new ones for each member."""
    seen: set[tuple[int, int]] = set()
    while len(seen) < N_RANDOM_FOLLOWS:
        yield from _follow(rng, ids, seen, rng.randrange(N_ACCOUNTS))
    for member in range(N_MEMBERS):
        goal = len(seen) + MEMBER_FOLLOWS
        while len(seen) < goal:
            yield from _follow(rng, ids, seen, member)


def _follow(
    rng: random.Random, ids: list[uuid.UUID], seen: set[tuple[int, int]], a: int
) -> Iterator[tuple[object, ...]]:
    """One follow of a random account by `a`, unless it is `a` itself or already followed."""
    b = rng.randrange(N_ACCOUNTS)
    if a != b and (a, b) not in seen:
        seen.add((a, b))
        created = BASE + dt.timedelta(seconds=rng.randint(180 * 86400, 365 * 86400))
        yield (uuid7(rng, created), ids[a], ids[b], created, created, 1)


def generate() -> Dataset:
    """Every seeded row, in a fixed order, with consistent counters."""
    rng = random.Random(SEED)
    base = list(_accounts(rng))
    ids = [a[0] for a in base]
    posts = list(_posts(rng, ids))
    follows = list(_follows(rng, ids))
    n_posts = Counter(p[1] for p in posts)
    n_followers = Counter(f[2] for f in follows)
    n_following = Counter(f[1] for f in follows)
    accounts: list[tuple[object, ...]] = [
        (aid, f"user{i:05d}", f"user{i:05d}@example.com", "member", True, False,
         f"User {i:05d}", None, n_followers[aid], n_following[aid], n_posts[aid],
         created, created, 1)
        for aid, i, created in base
    ]  # fmt: skip
    return Dataset(accounts, posts, follows)


async def _check_tables(con: asyncpg.Connection) -> None:
    """Fail with a clear sentence when the tables are not the ones this seed fills."""
    for table, columns in TABLES.items():
        rows = await con.fetch(
            "SELECT column_name, is_nullable, column_default FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = $1",
            table,
        )
        found = {r["column_name"]: r for r in rows}
        if not found:
            sys.exit(f"seed: table {table} is missing: run `charpente migrate apply` first")
        missing = [c for c in columns if c not in found]
        extra = [
            c
            for c, r in found.items()
            if c not in columns and r["is_nullable"] == "NO" and r["column_default"] is None
        ]
        if missing or extra:
            sys.exit(f"seed: {table} does not match (missing {missing}, unfilled {extra})")


async def _is_seeded(con: asyncpg.Connection) -> bool:
    n_accounts = await con.fetchval("SELECT count(*) FROM accounts")
    n_follows = await con.fetchval("SELECT count(*) FROM follows")
    n_posts = await con.fetchval("SELECT count(*) FROM posts WHERE created_at < $1", SEED_END)
    n_passwords = await con.fetchval("SELECT count(*) FROM charpente_passwords")
    found = (n_accounts, n_posts, n_follows, n_passwords)
    return found == (N_ACCOUNTS, N_POSTS, N_FOLLOWS, N_ACCOUNTS)


async def password_rows(data: Dataset) -> list[tuple[object, ...]]:
    """One charpente_passwords row per account, all with one hash of PASSWORD made by
    charpente's hasher (hashing 10,000 distinct salts would take minutes, and a login
    costs the same whatever the salt)."""
    hashed = await PasswordHasher().hash(PASSWORD)
    return [(a[0], hashed, a[ACCOUNT_COLUMNS.index("created_at")]) for a in data.accounts]


async def seed(con: asyncpg.Connection, data: Dataset) -> None:
    # CASCADE empties the engine's tables that point at accounts (passwords, tokens, ...).
    await con.execute("TRUNCATE accounts, posts, follows, charpente_auth_log CASCADE")
    for table in EVENT_TABLES:  # the history and outbox of earlier writes
        if await con.fetchval("SELECT to_regclass($1)", table):
            await con.execute(f"TRUNCATE {table}")
    for table, rows in (
        ("accounts", data.accounts),
        ("posts", data.posts),
        ("follows", data.follows),
        ("charpente_passwords", await password_rows(data)),
    ):
        await con.copy_records_to_table(table, records=rows, columns=TABLES[table])
    for table in TABLES:
        await con.execute(f"VACUUM ANALYZE {table}")


async def reset(con: asyncpg.Connection, data: Dataset) -> str:
    """Bring the data back to the seeded state: new posts go, edited posts and counters return,
    and the history and outbox of the run's writes are emptied."""
    deleted = await con.execute("DELETE FROM posts WHERE created_at >= $1", SEED_END)
    found = [t for t in EVENT_TABLES if await con.fetchval("SELECT to_regclass($1)", t)]
    await con.execute(f"TRUNCATE {', '.join((*RUN_TABLES, *found))}")
    async with con.transaction():
        await con.execute(
            "CREATE TEMP TABLE seed_posts (id uuid, body text, updated_at timestamptz)"
            " ON COMMIT DROP"
        )
        await con.copy_records_to_table(
            "seed_posts", records=[(p[0], p[2], p[8]) for p in data.posts]
        )
        edited = await con.execute(
            "UPDATE posts p SET body = s.body, updated_at = s.updated_at, version = 1"
            " FROM seed_posts s WHERE p.id = s.id AND p.version <> 1"
        )
        await con.execute(
            "CREATE TEMP TABLE seed_accounts (id uuid, follower_count bigint,"
            " following_count bigint, post_count bigint, updated_at timestamptz)"
            " ON COMMIT DROP"
        )
        await con.copy_records_to_table(
            "seed_accounts", records=[_counters(a) for a in data.accounts]
        )
        accounts = await con.execute(
            "UPDATE accounts a SET follower_count = s.follower_count,"
            " following_count = s.following_count, post_count = s.post_count,"
            " updated_at = s.updated_at, version = 1"
            " FROM seed_accounts s WHERE a.id = s.id AND (a.version <> 1"
            " OR a.post_count <> s.post_count OR a.follower_count <> s.follower_count"
            " OR a.following_count <> s.following_count)"
        )
    await con.execute("VACUUM ANALYZE posts")
    await con.execute("VACUUM ANALYZE accounts")
    return f"posts {deleted.split()[-1]} deleted, {edited.split()[-1]} restored; " + (
        f"accounts {accounts.split()[-1]} restored"
    )


def _counters(account: tuple[object, ...]) -> tuple[object, ...]:
    """An account's id, follower_count, following_count, post_count and updated_at."""
    names = ("id", "follower_count", "following_count", "post_count", "updated_at")
    return tuple(account[ACCOUNT_COLUMNS.index(n)] for n in names)


def write_ids(data: Dataset, directory: Path) -> None:
    """The lists the wrk scripts and tokens.py read, one item a line.

    posts.txt holds the public posts only: the ones an anonymous caller may read (any
    other is a 404 for it). member_posts.txt pairs each post of a member with the member's
    line number in members.txt (and so in the token file): W2 patches a post with its
    author's token, the only caller the social template lets edit it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    members = {a[0]: n for n, a in enumerate(data.members, start=1)}
    email = ACCOUNT_COLUMNS.index("email")
    lists: dict[str, list[object]] = {
        "posts.txt": [p[0] for p in data.posts if p[3] == "public"],
        "accounts.txt": [a[0] for a in data.accounts],
        "w2_posts.txt": [p[0] for p in data.posts[:W2_POOL]],
        "emails.txt": [a[email] for a in data.accounts],
        "members.txt": [a[email] for a in data.members],
        "member_posts.txt": [f"{p[0]} {members[p[1]]}" for p in data.posts if p[1] in members],
        "password.txt": [PASSWORD],
    }
    for name, items in lists.items():
        (directory / name).write_text("".join(f"{i}\n" for i in items))


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="empty the tables and seed again")
    parser.add_argument("--reset", action="store_true", help="undo what a benchmark run changed")
    parser.add_argument("--ids", type=Path, help="write the id lists for the wrk scripts here")
    parser.add_argument("--dsn", default=DSN, help=f"the database (default {DSN})")
    args = parser.parse_args(argv)
    data = generate()
    con = await asyncpg.connect(args.dsn)
    try:
        await _check_tables(con)
        if args.reset:
            print(f"reset: {await reset(con, data)}")
        elif args.force or not await _is_seeded(con):
            await seed(con, data)
            digest = await con.fetchval(
                "SELECT md5(string_agg(id::text || author::text || body, ',' ORDER BY id))"
                " FROM posts"
            )
            print(f"seed: accounts={N_ACCOUNTS} posts={N_POSTS} follows={N_FOLLOWS} md5={digest}")
        else:
            print("seed: already seeded (--force to seed again)")
    finally:
        await con.close()
    if args.ids:
        write_ids(data, args.ids)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
