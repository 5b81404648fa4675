"""Sessions over real HTTP: the caller's sign-ins listed and ended, one or all but the
current one, by their owner or an admin; an ended sign-in's tokens stop in every process."""

from __future__ import annotations

import uuid

import pytest
from backend import PASSWORD, Backend

from charpente.errors import Unauthorized
from charpente.runtime.auth import Accounts

pytestmark = pytest.mark.anyio


def unique(name: str) -> str:
    return f"{name}@s{uuid.uuid4().hex[:12]}.example"


async def sign_in(backend: Backend, email: str, agent: str) -> dict[str, str]:
    form = {"grant_type": "password", "username": email, "password": PASSWORD}
    answer = await backend.client.post("/v1/auth/token", data=form, headers={"User-Agent": agent})
    assert answer.status_code == 200, answer.text
    pair: dict[str, str] = answer.json()
    return pair


def bearer(pair: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def test_people_see_their_sign_ins_and_end_one(backend: Backend) -> None:
    ada = unique("ada")
    await backend.signup(ada)
    laptop = await sign_in(backend, ada, "Firefox on the laptop")
    phone = await sign_in(backend, ada, "Safari on the phone")
    assert (await backend.refresh(phone["refresh_token"])).status_code == 200

    listed = await backend.client.get("/v1/auth/sessions", headers=bearer(laptop))
    assert listed.status_code == 200
    assert listed.headers["cache-control"] == "no-store"
    sessions = {s["user_agent"]: s for s in listed.json()["data"]}
    assert set(sessions) == {"Firefox on the laptop", "Safari on the phone"}
    mine, other = sessions["Firefox on the laptop"], sessions["Safari on the phone"]
    assert (mine["current"], other["current"]) == (True, False)
    assert mine["method"] == "password"
    assert mine["ip"] == "127.0.0.1"
    assert other["last_used_at"] > other["created_at"]  # refreshed since

    ended = await backend.client.delete(f"/v1/auth/sessions/{other['id']}", headers=bearer(laptop))
    assert ended.status_code == 204
    assert (await backend.refresh(phone["refresh_token"])).status_code == 400
    answer = await backend.me(phone["access_token"])
    assert answer.status_code == 401  # the phone's access tokens end at once, too
    assert (await backend.me(laptop["access_token"])).status_code == 200
    again = await backend.client.delete(f"/v1/auth/sessions/{other['id']}", headers=bearer(laptop))
    assert again.status_code == 404
    listed = await backend.client.get("/v1/auth/sessions", headers=bearer(laptop))
    assert [s["id"] for s in listed.json()["data"]] == [mine["id"]]
    assert ("session_ended", other["id"]) in await backend.events()


async def test_ending_all_the_others_keeps_this_one(backend: Backend) -> None:
    ada = unique("ada")
    await backend.signup(ada)
    here = await sign_in(backend, ada, "here")
    others = [await sign_in(backend, ada, f"device {n}") for n in range(3)]

    ended = await backend.client.delete("/v1/auth/sessions", headers=bearer(here))
    assert ended.json() == {"ended": 3}
    for pair in others:
        assert (await backend.refresh(pair["refresh_token"])).status_code == 400
    assert (await backend.refresh(here["refresh_token"])).status_code == 200


async def test_a_session_of_someone_else_is_not_yours_to_end(backend: Backend) -> None:
    ada, bob = unique("ada"), unique("bob")
    await backend.signup(ada)
    await backend.signup(bob)
    ada_pair, bob_pair = await sign_in(backend, ada, "a"), await sign_in(backend, bob, "b")
    listed = await backend.client.get("/v1/auth/sessions", headers=bearer(bob_pair))
    [bobs] = listed.json()["data"]

    refused = await backend.client.delete(
        f"/v1/auth/sessions/{bobs['id']}", headers=bearer(ada_pair)
    )
    assert refused.status_code == 404
    assert (await backend.refresh(bob_pair["refresh_token"])).status_code == 200
    me = (await backend.me(bob_pair["access_token"])).json()
    other = await backend.client.get(
        f"/v1/auth/accounts/{me['id']}/sessions", headers=bearer(ada_pair)
    )
    assert other.status_code == 403
    assert (await backend.client.get("/v1/auth/sessions")).status_code == 401


async def test_admins_see_and_end_any_account_s_sessions(backend: Backend) -> None:
    ada, root = unique("ada"), unique("root")
    await backend.signup(ada)
    await backend.accounts.create_account(root, "admin", PASSWORD)
    ada_pair, admin = await sign_in(backend, ada, "ada's"), await sign_in(backend, root, "root's")
    ada_id = (await backend.me(ada_pair["access_token"])).json()["id"]

    listed = await backend.client.get(f"/v1/auth/accounts/{ada_id}/sessions", headers=bearer(admin))
    [session] = listed.json()["data"]
    assert (session["user_agent"], session["current"]) == ("ada's", False)
    url = f"/v1/auth/accounts/{ada_id}/sessions/{session['id']}"
    assert (await backend.client.delete(url, headers=bearer(admin))).status_code == 204
    assert (await backend.me(ada_pair["access_token"])).status_code == 401
    assert (await backend.refresh(ada_pair["refresh_token"])).status_code == 400


async def test_an_ended_session_s_access_tokens_stop_in_other_processes(backend: Backend) -> None:
    ada = unique("ada")
    await backend.signup(ada)
    here, phone = await sign_in(backend, ada, "here"), await sign_in(backend, ada, "phone")
    mine = backend.accounts
    there = Accounts(mine.design, mine.service, mine.store, clock=mine.clock)  # another process
    await there.reload_keys()
    header = f"Bearer {phone['access_token']}"
    assert there.authenticate(header).id is not None

    await backend.client.delete("/v1/auth/sessions", headers=bearer(here))
    await there.learn_ended_sessions()  # what its next reload does
    with pytest.raises(Unauthorized, match="session ended"):
        there.authenticate(header)
    assert there.authenticate(f"Bearer {here['access_token']}").session is not None
