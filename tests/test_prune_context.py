"""The on_person pruner: ball-sized boxes on a detected person, voted per track."""
import numpy as np

from pseudolabel.prune.context import OnPersonConfig, apply_on_person, group_vote_mask, on_object_mask
from pseudolabel.records import Box, Dataset, Frame

PERSON = [100.0, 100.0, 140.0, 200.0]  # 40 x 100 px


def test_on_object_mask_flags_parts_above_the_feet_only():
    boxes = [[115, 110, 125, 120],   # head
             [112, 140, 128, 156],   # shirt
             [115, 188, 125, 198],   # ball at the feet (centre in the bottom quarter)
             [300, 150, 310, 160],   # ball elsewhere
             [100, 100, 140, 190]]   # as large as the person
    assert on_object_mask(boxes, [PERSON]).tolist() == [True, True, False, False, False]
    assert on_object_mask(boxes, np.zeros((0, 4))).tolist() == [False] * 5
    assert on_object_mask(np.zeros((0, 4)), [PERSON]).shape == (0,)
    assert on_object_mask(boxes, [PERSON], foot_fraction=1.0).tolist() == [True, True, True, False, False]


def test_group_vote_mask_needs_a_share_and_at_least_one_flag():
    groups = ["a", "a", "a", "b", "b", "c", "d"]
    flags = [True, True, False, True, False, True, False]
    assert group_vote_mask(groups, flags, min_fraction=0.5).tolist() == [True] * 6 + [False]
    assert group_vote_mask(groups, flags, min_fraction=0.7).tolist() == [False] * 5 + [True, False]
    assert group_vote_mask(groups, flags, min_fraction=0.0).tolist() == [True] * 6 + [False]


def _dataset():
    frames = [Frame(id=i + 1, file_name=f"v/{i:06d}.jpg", width=640, height=360, video_id="v", frame_index=i)
              for i in range(4)]
    boxes, n = [], 0

    def add(frame, xyxy, track):
        nonlocal n
        n += 1
        extra = {} if track is None else {"track_id": track}
        boxes.append(Box(image_id=frame, xyxy=tuple(map(float, xyxy)), score=0.8, id=n, extra=extra))

    for i in range(4):  # a shirt tracked on every frame, the person detected on two of them
        add(i + 1, (112 + 5 * i, 140, 128 + 5 * i, 156), "v:1")
    for i in range(4):  # a ball crossing in front of the person once
        add(i + 1, (60 + 20 * i, 150, 70 + 20 * i, 160), "v:2")
    add(1, (115, 110, 125, 120), None)  # a head, no track
    add(4, (400, 50, 410, 60), None)  # a lone ball off the persons
    ds = Dataset(frames=frames, boxes=boxes)
    persons = Dataset(frames=[Frame(**{**f.__dict__}) for f in frames], categories=[{"id": 1, "name": "person"}])
    for fid, xyxy in ((1, PERSON), (2, (105, 100, 145, 200)), (3, (100, 100, 150, 200))):
        persons.boxes.append(Box(image_id=fid, xyxy=tuple(map(float, xyxy)), score=0.9, id=len(persons.boxes) + 1))
    persons.boxes.append(Box(image_id=4, xyxy=(380.0, 30.0, 430.0, 200.0), score=0.3, id=4))  # below min_score
    return ds, persons


def test_apply_on_person_prunes_tracks_and_lone_boxes_with_their_reason():
    ds, persons = _dataset()
    counts = apply_on_person(ds, persons, OnPersonConfig(enabled=True), round=2)
    pruned = {b.id for b in ds.boxes if not b.kept}
    assert pruned == {1, 2, 3, 4, 9} and counts == {"on_person": 5}
    assert all(b.reason == "on_person" and b.extra["pruned_round"] == 2 for b in ds.boxes if not b.kept)


def test_apply_on_person_disabled_or_stricter_vote():
    ds, persons = _dataset()
    assert apply_on_person(ds, persons, OnPersonConfig(enabled=False), round=0) == {"on_person": 0}
    assert all(b.kept for b in ds.boxes)
    assert apply_on_person(ds, persons, OnPersonConfig(enabled=True, track_fraction=0.9), round=0) == {"on_person": 1}


def test_a_frame_sized_person_box_is_a_crowd_not_a_person():
    ds, persons = _dataset()
    for b in persons.boxes:  # the whole-frame view's "person" around all the players
        b.xyxy = (0.0, 0.0, 640.0, 300.0)
    assert apply_on_person(ds, persons, OnPersonConfig(enabled=True), round=0) == {"on_person": 0}
    assert apply_on_person(ds, persons, OnPersonConfig(enabled=True, max_frame_fraction=1.0),
                           round=0)["on_person"] > 0
