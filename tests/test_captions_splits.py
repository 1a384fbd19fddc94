from collections import Counter

from cinepipe.captions import TEMPLATES, caption, pattern_prompts
from cinepipe.splits import assign_splits
from cinepipe.taxonomy import PATTERNS, TAXONOMY


def test_captions_name_every_label_and_vary():
    texts = {caption(f"film:{i}", "close_up", "low_angle", "pan_left") for i in range(60)}
    assert len(texts) == len(TEMPLATES)  # every template is used
    for text in texts:
        for value in ("close_up", "low_angle", "pan_left"):
            assert TAXONOMY.phrases[value].split(" ", 1)[1] in text.lower()
    assert caption("film:1", "close_up", "low_angle", "pan_left") == caption("film:1", "close_up", "low_angle",
                                                                             "pan_left")


def test_captions_leave_unknown_values_out():
    text = caption("film:3", None, "unknown", "static")
    assert "None" not in text and "unknown" not in text and "static" in text


def test_pattern_prompts_cover_the_taxonomy():
    for pattern in PATTERNS:
        prompts = pattern_prompts(pattern)
        assert prompts and all(TAXONOMY.phrases[pattern] in p for p in prompts)


def test_splits_by_film_are_balanced_stable_and_seeded():
    films = [f"film{i:02d}" for i in range(40)]
    first = assign_splits(films[:20], seed=1)
    assert set(Counter(first.values())) == {"train", "val", "test"}
    grown = assign_splits(films, previous=first, seed=1)
    assert all(grown[f] == s for f, s in first.items())  # existing films keep their split
    assert Counter(grown.values()) == Counter({"train": 28, "val": 6, "test": 6})
    assert assign_splits(films, seed=1) == assign_splits(list(reversed(films)), seed=1)  # order-free
    assert assign_splits(films, seed=1) != assign_splits(films, seed=2)
    few = assign_splits(["a", "b", "c"], seed=0)
    assert sorted(few.values()) == ["test", "train", "val"]


def test_unknown_values_are_left_out_not_invented():
    from cinepipe.captions import TEMPLATES, caption_from_template

    for k in range(len(TEMPLATES)):
        text = caption_from_template(k, "close_up", None, None)
        assert "static" not in text and "close-up" in text and ",." not in text and ",," not in text
        assert "static" in caption_from_template(k, None, None, "static")
