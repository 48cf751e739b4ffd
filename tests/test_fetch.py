"""The FFHQ download is checked: a file without the pinned SHA-256 is deleted and fetched once
more, then refused with a clear error. No network: ``urlretrieve`` is replaced by a fake that
writes the bytes it is given."""

import hashlib

import pytest

from pulse_jax.weights import fetch, read_manifest

GOOD, BAD = b"the real file" * 100, b"a truncated or changed file"
URLS = ("https://example.invalid/a.pkl",)


def _sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def serve(monkeypatch):
    """``serve(b1, b2, ...)``: the n-th download writes the n-th bytes (the last one after
    that); returns the list of URLs fetched."""
    fetched = []

    def install(*payloads):
        def fake_urlretrieve(url, filename):
            fetched.append(url)
            with open(filename, "wb") as f:
                f.write(payloads[min(len(fetched), len(payloads)) - 1])
        monkeypatch.setattr(fetch.urllib.request, "urlretrieve", fake_urlretrieve)
        return fetched
    return install


def test_good_download_is_kept(tmp_path, serve):
    fetched = serve(GOOD)
    target = tmp_path / "d" / "x.pkl"
    assert fetch.download(URLS, target, log=lambda m: None, sha256=_sha(GOOD).upper()) == target
    assert target.read_bytes() == GOOD and fetched == list(URLS)
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.pkl"]


def test_corrupt_download_is_deleted_and_fetched_again(tmp_path, serve):
    fetched = serve(BAD, GOOD)
    seen = []
    target = fetch.download(URLS, tmp_path / "x.pkl", log=seen.append, sha256=_sha(GOOD))
    assert target.read_bytes() == GOOD and len(fetched) == 2
    assert any(_sha(BAD) in m and "downloading it again" in m for m in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pkl"]


def test_persistent_mismatch_is_a_clear_error_and_leaves_nothing(tmp_path, serve):
    fetched = serve(BAD)
    with pytest.raises(fetch.DownloadError, match=f"expected SHA-256 {_sha(GOOD)}") as err:
        fetch.download(URLS, tmp_path / "x.pkl", log=lambda m: None, sha256=_sha(GOOD))
    assert isinstance(err.value, OSError) and _sha(BAD) in str(err.value)
    assert len(fetched) == 2 and list(tmp_path.iterdir()) == []


def test_the_ffhq_route_checks_the_pinned_digest_by_default(tmp_path, serve):
    """Nothing but NVIDIA's file passes ffhq_generator's default check; the cache stays empty."""
    assert len(fetch.FFHQ_SHA256) == 64 and int(fetch.FFHQ_SHA256, 16) >= 0
    fetched = serve(BAD)
    with pytest.raises(fetch.DownloadError, match=fetch.FFHQ_SHA256):
        fetch.ffhq_generator(str(tmp_path), urls=URLS, log=lambda m: None)
    assert len(fetched) == 2
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_corrupt_cached_pickle_is_replaced_then_converted(tmp_path, serve):
    from test_nvidia_pickle import write_pickle
    pkl, _ = write_pickle(tmp_path / "small.pkl", tmp_path / "MARKER")
    good = pkl.read_bytes()
    cached = tmp_path / "cache" / "downloads" / fetch.FFHQ_PICKLE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(good[: len(good) // 2])   # an earlier download cut short
    fetched = serve(good)
    seen = []
    gen = fetch.ffhq_generator(str(tmp_path / "cache"), urls=URLS, log=seen.append,
                               fit_samples=2000, sha256=_sha(good))
    assert cached.read_bytes() == good and len(fetched) == 1
    assert any("deleted" in m for m in seen) and gen.config.resolution > 0
    manifest = read_manifest(tmp_path / "cache" / "checkpoints" / "ffhq1024")
    assert manifest["sources"][0]["sha256"] == _sha(good)
