"""``avct preprocess``: talking-head videos -> a training dataset (format: ``docs/dataset.md``).

Modules: ``run`` (the whole run), ``clip`` (one clip), ``scan`` (pass 1), ``crop`` (the fixed crop),
``frames`` (pass 2), ``poses``, ``audio``, ``index`` (index.json and the lock), ``report``.

Per clip, in this order (cheap checks first, so a bad clip costs little):

1. probe: no audio track / shorter than 1 s / unreadable -> skipped;
2. the audio track (16 kHz mono, exactly as ``avct generate`` decodes speech);
3. pass 1 over the video: every frame's timestamp, and face detection on a frame every
   ``SAMPLE_INTERVAL_S`` (at least ``MIN_SAMPLES`` per clip) -> one **fixed crop per clip** (the paper
   crops "as in FOMM ... without aligning speakers' noses across frames"): a robust union of the
   speaker's face boxes through the official crop maths (:func:`avct.face.crop.crop_box`);
4. pass 2: the video resampled to 25 fps by timestamps (for each 40 ms tick the nearest source frame,
   so variable frame rates and dropped frames are handled), cropped, resized to 256², streamed into
   ``frames.npy`` (constant memory for any clip length); 68 landmarks on every crop;
5. per-frame head pose (from the landmarks) and mouth box (for the D_sync crops), interpolated over
   frames where the face was lost; the 41-d features and the phonemes of the audio.

Each clip is written into a hidden temporary folder that is renamed into place only when complete
(with a ``DONE`` marker), and ``index.json`` is rewritten atomically after every clip, so an
interrupted run loses at most the clip in progress and a re-run skips finished clips. A bad clip is
reported with its reason and skipped; it never stops the run.

The speaker rule (which face a clip is about), applied to the sampled frames:

* a face must be found in at least half of them (else "no face");
* a frame is *ambiguous* when its second-largest face has at least half the area of the largest; if
  more than half of the frames with a face are ambiguous, the clip is skipped (ambiguous speaker);
* the speaker is the face nearest to the median position of the largest faces (and of similar size);
  it must be there in at least half of the sampled frames (else "the face does not stay in one
  place": a fixed crop cannot follow cuts between people or shots).

After pass 2 a clip is also skipped when the speaker's face is lost (not detected in the crop) in more than
a quarter of its frames; pass 2 stops as soon as that is certain. Clips with fewer lost frames are kept
(``lost_frames`` in the index, NaN landmarks) so that a short cut-away does not cost a whole clip."""
