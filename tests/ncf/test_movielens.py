"""MovieLens download against a local HTTP server holding a small synthetic archive (no GroupLens here)."""

import hashlib
import http.server
import io
import threading
import zipfile

import pytest

from ncf import movielens
from ncf.errors import DataError


@pytest.fixture
def server(tmp_path, ratings):
    root = tmp_path / "www"
    root.mkdir()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("ml-latest-small/ratings.csv", ratings.head(200).to_csv(index=False))
        z.writestr("ml-latest-small/README.txt", "synthetic")
    archive = buffer.getvalue()
    (root / "ml-latest-small.zip").write_bytes(archive)
    md5 = hashlib.md5(archive).hexdigest()
    (root / "ml-latest-small.zip.md5").write_text(f"MD5 (ml-latest-small.zip) = {md5}\n")
    (root / "ml-100k.zip").write_bytes(archive)  # right bytes for a wrong name: fails the pinned checksum

    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests, md5
    httpd.shutdown()


def test_download_checks_the_published_md5_extracts_and_reads(server, tmp_path):
    url, requests, _ = server
    data = movielens.load("ml-latest-small", tmp_path / "cache", base_url=url, progress=False)
    assert len(data) == 200
    assert "/ml-latest-small.zip.md5" in requests and "/ml-latest-small.zip" in requests


def test_a_second_call_uses_the_cache_without_the_network(server, tmp_path):
    url, requests, _ = server
    first = movielens.download("ml-latest-small", tmp_path / "cache", base_url=url, progress=False)
    count = len(requests)
    assert movielens.download("ml-latest-small", tmp_path / "cache", base_url=url, progress=False) == first
    assert len(requests) == count


def test_a_checksum_mismatch_keeps_nothing(server, tmp_path):
    url, _, _ = server
    with pytest.raises(DataError, match="checksum mismatch.*expected 0e33842e24a9c977be4e0107933c0723"):
        movielens.download("ml-100k", tmp_path / "cache", base_url=url, progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_explicit_md5_overrides_the_pinned_one_and_the_member_must_exist(server, tmp_path):
    url, _, md5 = server
    with pytest.raises(DataError, match="has no ml-100k/u.data"):
        movielens.download("ml-100k", tmp_path / "cache", base_url=url, md5=md5, progress=False)


def test_an_unreachable_server_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot fetch the checksum"):
        movielens.download("ml-latest-small", tmp_path, base_url="http://127.0.0.1:9", progress=False, timeout=2)


def test_unknown_sets_are_refused_with_the_choices():
    with pytest.raises(DataError, match=r"choose one of \['ml-100k', 'ml-1m', 'ml-25m', 'ml-latest-small'\]"):
        movielens.download("ml-7")
