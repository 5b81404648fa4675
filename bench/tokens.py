"""Sign the benchmark's members in and write their access tokens, for the token scenarios.

    python bench/tokens.py --base http://127.0.0.1:8101 --ids DIR --out TOKENS.txt

Real sign-ins: one `POST /v1/auth/token` (grant_type=password) per line of DIR/members.txt
with the password of DIR/password.txt, and one token a line in the same order, so line n
of the token file is the token of member n (W2 patches member n's posts with it). Each
sign-in names its own address in X-Forwarded-For (the server trusts 127.0.0.1 as a proxy),
so the per-address limit on /v1/auth/* (20 a minute) does not refuse the 64 sign-ins.
Bounded: 10 s per request, 4 at a time; any failure stops the script with the answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TIMEOUT_S = 10
PARALLEL = 4


def sign_in(base: str, email: str, password: str, address: str) -> str:
    """The access token of a password grant for `email`; exits with the answer on failure."""
    form = {"grant_type": "password", "username": email, "password": password}
    request = urllib.request.Request(  # base is 127.0.0.1 (bench/run)
        base + "/v1/auth/token",
        data=urllib.parse.urlencode(form).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Forwarded-For": address,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return str(json.loads(response.read())["access_token"])
    except urllib.error.HTTPError as error:
        sys.exit(f"tokens: sign-in of {email} answered {error.code}: {error.read()[:300]!r}")
    except (urllib.error.URLError, TimeoutError) as error:
        sys.exit(f"tokens: sign-in of {email} failed: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the server, e.g. http://127.0.0.1:8101")
    parser.add_argument("--ids", type=Path, required=True, help="the directory seed.py wrote")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    emails = (args.ids / "members.txt").read_text().split()
    password = (args.ids / "password.txt").read_text().strip()
    # Addresses of 10.250.0.0/16, apart from the ones the login storm uses (10.1-199.x.x).
    addresses = [f"10.250.{n // 250}.{n % 250 + 1}" for n in range(len(emails))]
    with ThreadPoolExecutor(PARALLEL) as pool:
        tokens = list(
            pool.map(lambda pair: sign_in(args.base, pair[0], password, pair[1]),
                     zip(emails, addresses, strict=True))
        )  # fmt: skip
    args.out.write_text("".join(f"{t}\n" for t in tokens))
    print(f"tokens: {len(tokens)} members signed in")


if __name__ == "__main__":
    main()
