"""The synthetic camera's rendered frames kept in the cache dir (ros/synthetic_camera.py
`rendered`): a second camera with the same settings replays the very same frames without
rendering, other settings render anew."""

import threading

import numpy as np


def test_a_second_camera_replays_the_cached_frames(tmp_path, monkeypatch):
    monkeypatch.setenv("POSEDIFF_CACHE", str(tmp_path))
    from posediff_ros.ros import synthetic_camera as cam

    calls = []

    def render_ring(*args):  # the real renderer, counted
        calls.append(args[:-2])
        cam.render_ring(*args)

    render_ring.__name__ = "render_ring"
    first, again, other = [], [], []
    cam.rendered(render_ring, (2, 5, 3, 160, 120), first, threading.Event())
    cam.rendered(render_ring, (2, 5, 3, 160, 120), again, threading.Event())
    cam.rendered(render_ring, (2, 6, 3, 160, 120), other, threading.Event())
    assert len(calls) == 2  # the second camera loaded, the third (another seed) rendered
    assert len(list((tmp_path / "camera").glob("render_ring-*.npz"))) == 2
    assert len(first) == len(again) == 2
    for a, b in zip(first, again, strict=True):
        for name in ("depth", "color", "mask", "K"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and np.array_equal(x, y)
        assert [g.instance_id for g in a.instances] == [g.instance_id for g in b.instances]
        for g, h in zip(a.instances, b.instances, strict=True):
            assert (g.class_id, g.handle_visible, g.model_name) == (h.class_id, h.handle_visible,
                                                                    h.model_name)
            for field in ("rotation", "translation", "size"):
                np.testing.assert_array_equal(getattr(g, field), getattr(h, field))
    assert not np.array_equal(first[0].depth, other[0].depth)


def test_an_unreadable_cache_file_is_rendered_again(tmp_path, monkeypatch):
    monkeypatch.setenv("POSEDIFF_CACHE", str(tmp_path))
    from posediff_ros.ros import synthetic_camera as cam

    out = []
    cam.rendered(cam.render_ring, (1, 5, 2, 96, 72), out, threading.Event())
    (path,) = (tmp_path / "camera").glob("*.npz")
    path.write_bytes(b"truncated")
    again = []
    cam.rendered(cam.render_ring, (1, 5, 2, 96, 72), again, threading.Event())
    assert np.array_equal(out[0].depth, again[0].depth)  # rendered again, and saved again
    assert len(cam.load_frames(path)) == 1
