"""Request ids from idempotency keys (`deployments.request_ids`): stable per key, scoped by API key; no Ray."""

import uuid

from deployments.request_ids import page_id, request_id


def test_without_a_key_every_request_gets_a_new_id():
    ids = {request_id(None, None) for _ in range(100)} | {request_id("", "secret")}
    assert len(ids) == 101 and all(uuid.UUID(i).version == 4 for i in ids)


def test_every_try_with_one_key_gets_one_id_and_other_keys_others():
    first = request_id("order-17/page-1", "secret")
    assert request_id("order-17/page-1", "secret") == first and uuid.UUID(first).version == 5
    assert request_id("order-17/page-2", "secret") != first


def test_two_callers_choosing_the_same_key_never_share_an_id():
    assert len({request_id("1", "alice's key"), request_id("1", "bob's key"), request_id("1", None)}) == 3


def test_the_pages_of_one_request_get_ids_of_their_own_the_same_on_every_try():
    document = request_id("scan.pdf", "secret")
    pages = [page_id(document, n) for n in (1, 2, 3)]
    assert len({document, *pages}) == 4 and all(uuid.UUID(p).version == 5 for p in pages)
    assert pages == [page_id(request_id("scan.pdf", "secret"), n) for n in (1, 2, 3)]
    assert page_id(request_id("scan.pdf", "other key"), 1) not in pages
