"""The memory-mapped dataset reader on a small real dataset (one 2 s HDTF clip) and on broken ones."""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest

from avct.data.dataset import ClipArrays, TalkingHeadDataset
from avct.data.preprocess.run import preprocess
from avct.errors import AvctError

CLIP = "hdtf_rdradio10_vexpress_2s"


@pytest.fixture(scope="module")
def root(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "dataset"
    report = preprocess([data / "video" / f"{CLIP}.mp4"], out, phonemes="none", max_seconds=1.6,
                        speaker="rd", progress=False)
    assert [o.name for o in report.processed] == [CLIP]
    return out


def test_reads_the_index_and_memory_maps_the_arrays(root):
    ds = TalkingHeadDataset(root)
    assert len(ds) == 1 and ds.clips[0].name == CLIP and ds.clips[0].speaker == "rd"
    assert ds.speakers() == ["rd"] and ds.usable_frames == 40 and ds.skipped == []
    clip = ds.clip(0)
    assert ds.clip(CLIP) is clip
    assert isinstance(clip.frames, np.memmap) and isinstance(clip.features, np.memmap)
    assert clip.frames.shape == (40, 256, 256, 3) and clip.num_frames == 40 and clip.usable_frames == 40
    assert clip.audio.dtype == np.float32 and len(clip.audio) == 640 * 40 + 240
    assert clip.features.shape == (160, 41)
    assert clip.phoneme_ids.shape == (40,) and clip.poses.shape == (40, 6)
    assert clip.landmarks.shape == (40, 68, 2) and clip.mouth_boxes.shape == (40, 4)
    assert clip.face_found.dtype == bool and clip.face_found.all()
    assert clip.meta["crop_box"] and clip.words()[0].word == "sil"


def test_range_helpers_are_aligned(root):
    clip = TalkingHeadDataset(root).clip(0)
    assert clip.frame_range(5, 29).shape == (24, 256, 256, 3)
    rows = clip.feature_rows(5, 29)
    assert rows.shape == (24, 4, 41)
    np.testing.assert_array_equal(rows[0], clip.features[20:24])
    np.testing.assert_array_equal(rows[-1], clip.features[4 * 28: 4 * 29])
    np.testing.assert_array_equal(clip.audio_range(2, 4), clip.audio[1280:2560])
    assert clip.phoneme_range(0, 40).shape == (40,)
    np.testing.assert_array_equal(clip.pose_range(3, 6), clip.poses[3:6])
    np.testing.assert_array_equal(clip.mouth_box_range(3, 6), clip.mouth_boxes[3:6])
    with pytest.raises(IndexError):
        clip.feature_rows(30, 41)
    with pytest.raises(IndexError):
        clip.frame_range(-1, 3)


def test_pickles_without_the_data(root):
    ds = TalkingHeadDataset(root)
    clip = ds.clip(0)
    _ = clip.frames[0], clip.features[0]
    assert len(pickle.dumps(ds)) < 10_000 and len(pickle.dumps(clip)) < 10_000
    again = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(again.clip(0).frames[7], clip.frames[7])


def test_missing_or_foreign_index_is_a_one_line_error(tmp_path):
    with pytest.raises(AvctError, match="index.json missing"):
        TalkingHeadDataset(tmp_path)
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(AvctError, match="cannot read the dataset index"):
        TalkingHeadDataset(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(AvctError, match="not an avct dataset index"):
        TalkingHeadDataset(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": "avct-dataset", "version": 99}))
    with pytest.raises(AvctError, match="version 99"):
        TalkingHeadDataset(tmp_path)


def test_incomplete_or_damaged_clips_are_reported(root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    folder = copy / "clips" / CLIP
    np.save(folder / "poses.npy", np.zeros((40, 5), np.float32))
    with pytest.raises(AvctError, match="poses.npy has float32"):
        _ = TalkingHeadDataset(copy).clip(0).poses
    (folder / "features.npy").unlink()
    with pytest.raises(AvctError, match="dataset file missing"):
        _ = TalkingHeadDataset(copy).clip(0).features
    (folder / "DONE").unlink()
    with pytest.raises(AvctError, match="incomplete"):
        TalkingHeadDataset(copy).clip(0)
    with pytest.raises(AvctError, match="no clip named"):
        TalkingHeadDataset(copy).clip("nope")
    assert isinstance(TalkingHeadDataset(root).clip(0), ClipArrays)
