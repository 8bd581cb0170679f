#!/usr/bin/env bash
# Re-create the weights bundled in src/avct/assets/default_weights (see MODEL_CARD.md there).
#
#   bash scripts/train_bundled_weights.sh [WORK_DIR]          # CPU recipe, small networks (~2 h on 2 cores)
#   SIZE=official bash scripts/train_bundled_weights.sh WORK  # the same data at the official size (GPU;
#                                                             # needs AVCT_VGG19_WEIGHTS, official presets)
#
# Data: ../shared/data/video (override with VIDEOS=...). The single speaker (Obama, two sessions) trains
# D_sync, the head-motion predictor and the AVCT; every other permissively usable clip, plus those two,
# trains the keypoint detector + renderer; those (but two whose mouth does not follow their audio) and five
# more (25 clips, 24 voices) train the lip-aperture network. Seven clips of four people none of them show are held out of everything for evaluation.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/bundled}
SIZE=${SIZE:-small}
VIDEOS=${VIDEOS:-../shared/data/video}
AVCT=${AVCT_BIN:-.venv/bin/avct}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$WORK"

# The first session's audio runs 6 frames (240 ms) late, the second's 2.5 frames at 30 fps (100 ms):
# both are re-synced, or D_sync and the AVCT would learn the offset.
SPEAKER_CLIPS=("obama_weekly_address_lia_47s.mov:0.24" "obama_styletalk_clip2_30s.mp4:0.10")
# The last three are more recordings of two of the first four's people (added on 2026-11-30).
HELDOUT=(feifeili_styletalk_clip1_10s.mp4 vox2_man_bluebg_00104_pcavs.mp4
         retalking_face5_woman_glasses_red_5s.mp4 vox2_man_beard_graybg_00067_pcavs.mp4
         vox2_man_tinted_glasses_741400163_pcavs.mp4 feifeili_styletalk_clip2_15s.mp4 feifeili_styletalk_clip3_7s.mp4)
# Not used at all: no licence / non-commercial only (wav2lip), no licence stated (rdradio10), bad input
# (hamilton: several faces), no audio (mead, carphone).
RENDERER_CLIPS=(obama_weekly_address_lia_47s.mov obama_styletalk_clip2_30s.mp4 kristinoem_styletalk_18s.mp4
    man_grayhair_address_edtalk_pose_source2_60s.mp4 woman_shorthair_address_edtalk_mouth_source_10s.mp4
    hdtf_katiehill_sadtalker_8s.mp4 hdtf_rdradio2_sadtalker_8s.mp4 hdtf_rdradio34_sadtalker_8s.mp4
    hdtf_edmarkey_sadtalker_8s.mp4 retalking_face2_man_mapbg_5s.mp4 retalking_face4_woman_bluebg_7s.mp4
    vox2_man_news_00015_pcavs.mp4 vox2_man_tealbg_681100216_pcavs.mp4 vox2_man_beard_pinkbg_00098_pcavs.mp4
    vox2_man_bald_whitebg_00473_pcavs.mp4 vox2_woman_brunette_517600055_pcavs.mp4
    vox2_man_hoodie_620900105_pcavs.mp4 vox2_man_tvstudio_796100172_pcavs.mp4 theresamay_aniportrait_5s.mp4
    liveportrait_d20_man_outdoor_7s.mp4 liveportrait_d6_woman_grimaces_34s.mp4
    latentsync_demo1_woman_portrait_10s.mp4)

# The lip-aperture network: every clip of RENDERER_CLIPS but latentsync_demo1 (its audio's sync is unverified)
# and liveportrait_d6 (grimaces, not speech), plus five more, each re-synced where its audio runs
# late (delay in s: the lag that maximised the correlation of a cross-fitted lip model's prediction with
# the clip's real lip aperture, kept where it raised it by more than 0.05; model card, "Lip motion").
LIP_CLIPS=("obama_weekly_address_lia_47s.mov:0.24" "obama_styletalk_clip2_30s.mp4:0.10"
    "kristinoem_styletalk_18s.mp4:0.08" "man_grayhair_address_edtalk_pose_source2_60s.mp4:0.08"
    "woman_shorthair_address_edtalk_mouth_source_10s.mp4:0" "hdtf_katiehill_sadtalker_8s.mp4:0"
    "hdtf_rdradio2_sadtalker_8s.mp4:0" "hdtf_rdradio34_sadtalker_8s.mp4:0" "hdtf_edmarkey_sadtalker_8s.mp4:0"
    "retalking_face2_man_mapbg_5s.mp4:0" "retalking_face4_woman_bluebg_7s.mp4:0" "vox2_man_news_00015_pcavs.mp4:0"
    "vox2_man_tealbg_681100216_pcavs.mp4:0" "vox2_man_beard_pinkbg_00098_pcavs.mp4:0"
    "vox2_man_bald_whitebg_00473_pcavs.mp4:0.16" "vox2_woman_brunette_517600055_pcavs.mp4:0.08"
    "vox2_man_hoodie_620900105_pcavs.mp4:0" "vox2_man_tvstudio_796100172_pcavs.mp4:0.06"
    "theresamay_aniportrait_5s.mp4:0.06" "liveportrait_d20_man_outdoor_7s.mp4:0.28"
    "andrew_styletalk_clip1_25s.mp4:0" "andrew_styletalk_clip2_27s.mp4:0" "reagan_styletalk_clip1_26s.mp4:0"
    "cnn_anchor_dfrf_71s.mp4:0" "macron_french_dfrf_50s.mp4:0")

for item in "${LIP_CLIPS[@]}"; do
    "$AVCT" preprocess "$VIDEOS/${item%%:*}" --out "$WORK/data/lips" --audio-delay "${item##*:}" -q
done
for item in "${SPEAKER_CLIPS[@]}"; do
    "$AVCT" preprocess "$VIDEOS/${item%%:*}" --out "$WORK/data/speaker" --speaker obama --audio-delay "${item##*:}" -q
done
"$AVCT" preprocess "${HELDOUT[@]/#/$VIDEOS/}" --out "$WORK/data/heldout" --no-phonemes -q
"$AVCT" preprocess "${RENDERER_CLIPS[@]/#/$VIDEOS/}" --out "$WORK/data/all" --no-phonemes -q

if [ "$SIZE" = official ]; then
    declare -A CONFIG=([renderer]=official [syncnet]=official [headmotion]=official [avct]=official
                       [lips]=configs/bundled/lips.yaml)
else
    declare -A CONFIG=([renderer]=configs/bundled/renderer.yaml [syncnet]=configs/bundled/syncnet.yaml
                       [headmotion]=configs/bundled/headmotion.yaml [avct]=configs/bundled/avct.yaml
                       [lips]=configs/bundled/lips.yaml)
fi
R="$WORK/runs"
# Each command resumes where it stopped when re-run (--resume once the run folder exists).
train() {  # stage, extra args...
    local stage=$1; shift
    if [ -f "$R/$stage/run.json" ]; then
        "$AVCT" train "$stage" --out "$R/$stage" --resume -q "$@"
    else
        "$AVCT" train "$stage" --config "${CONFIG[$stage]}" --out "$R/$stage" -q "$@"
    fi
}
train syncnet --data "$WORK/data/speaker"
train headmotion --data "$WORK/data/speaker"
train renderer --data "$WORK/data/all"
train avct --data "$WORK/data/speaker" --renderer "$R/renderer" --syncnet "$R/syncnet"
train lips --data "$WORK/data/lips"

# One weights folder (fp16 storage: half the size) with D_sync beside it for `avct evaluate --syncnet`.
"$AVCT" convert "$R/renderer" "$R/avct" "$R/headmotion" "$R/lips" --syncnet "$R/syncnet" --half -o "$WORK/weights"
"$PY" scripts/evaluate_heldout.py --data "$WORK/data/heldout" --checkpoint "$WORK/weights" \
    --syncnet "$WORK/weights" --out "$WORK/heldout_eval"
echo "weights: $WORK/weights (copy into src/avct/assets/default_weights to bundle them)"
