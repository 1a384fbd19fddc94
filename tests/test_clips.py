from cinepipe.clips import cut_clips
from cinepipe.media import count_frames, make_proxy, probe
from cinepipe.shots import split_shots
from conftest import leftovers


def test_clips_are_frame_exact_with_thumbnails(tmp_path, odd_films):
    probed = probe(odd_films["base"])
    proxy = make_proxy(probed, tmp_path / "proxy.mp4")
    shots = split_shots(probed.film_id, proxy).shots
    rows = cut_clips(proxy, shots, probed.film_id, tmp_path / "clips")
    assert len(rows) == 3
    for row, shot in zip(rows, shots):
        assert count_frames(row["clip_path"]) == shot["end_frame"] - shot["start_frame"] == 25
        assert len(row["thumbnail_paths"]) == 3
    # re-cutting replaces the folder whole and leaves nothing temporary behind
    rows2 = cut_clips(proxy, shots[:1] + [{**shots[1], "end_frame": shots[2]["end_frame"]}], probed.film_id,
                      tmp_path / "clips")
    assert len(rows2) == 2 and len(list((tmp_path / "clips").glob("*.mp4"))) == 2
    assert leftovers(tmp_path) == []
