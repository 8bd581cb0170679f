"""The HTTP API of a real server (uvicorn on localhost, bundled weights, fp32, 2 s of real speech)."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from avct.serving.client import download_video, encode_multipart, job_status, request, submit_job, wait_for_job
from avct.video.reader import probe_video
from support.live_server import EXAMPLE_IMAGE, SPEECH_SECONDS, wait_until


def test_round_trip(serve, speech_2s, tmp_path):
    server = serve()
    reply = submit_job(server.url, EXAMPLE_IMAGE, speech_2s)
    assert reply.status == 202, reply.body
    job_id = reply.json()["id"]
    assert request("GET", f"{server.url}/v1/jobs/{job_id}/video").status == 409  # not done yet

    seen = []
    while (status := job_status(server.url, job_id).json())["status"] not in ("done", "failed"):
        assert status["status"] in ("queued", "running") and status["error"] is None
        seen.append(status["progress"])
        time.sleep(0.2)
    assert status == {"id": job_id, "status": "done", "progress": 1.0, "error": None}
    assert seen == sorted(seen) and all(0 <= p < 1 for p in seen)

    info = probe_video(download_video(server.url, job_id, tmp_path / "out.mp4"))
    assert info.codec == "h264" and info.audio_codec == "aac" and info.fps == 25
    # one frame per 40 ms of the 2 s of speech (the last partial window may drop one frame)
    assert abs(info.video_duration - SPEECH_SECONDS) <= 0.04 + 1e-6, info
    assert info.frame_count == round(info.video_duration * 25)
    assert abs(info.audio_duration - SPEECH_SECONDS) <= 0.05, info

    partial = request("GET", f"{server.url}/v1/jobs/{job_id}/video", headers={"Range": "bytes=0-99"})
    assert partial.status == 206 and len(partial.body) == 100  # what a <video> element asks for

    assert request("DELETE", f"{server.url}/v1/jobs/{job_id}").status == 204
    assert job_status(server.url, job_id).status == 404
    assert server.job_folders() == []


def test_upload_limit_is_413_while_streaming(serve, speech_2s, tmp_path):
    server = serve(max_upload_mb=0.05)
    expected = {"detail": "upload larger than this server's limit of 0.05 MB"}
    declared = submit_job(server.url, EXAMPLE_IMAGE, speech_2s)          # Content-Length says too much
    assert (declared.status, declared.json()) == (413, expected)

    body, content_type = encode_multipart({"image": EXAMPLE_IMAGE, "audio": speech_2s})
    chunks = (body[i:i + 16384] for i in range(0, len(body), 16384))     # no length: counted as it arrives
    streamed = request("POST", f"{server.url}/v1/jobs", chunks, {"Content-Type": content_type})
    assert (streamed.status, streamed.json()) == (413, expected)

    small = tmp_path / "notes.txt"
    small.write_text("not a photo")
    under = submit_job(server.url, small, small)                          # under the limit: read and checked
    assert under.status == 422 and under.json()["detail"] == "not a readable image: notes.txt (UnidentifiedImageError)"
    assert server.job_folders() == []


def test_bad_input_is_422_with_the_cli_message(serve, speech_2s, tmp_path, capsys):
    from avct.cli import main

    not_image = tmp_path / "notes.png"                      # text behind an image's name
    not_image.write_text("not a picture", encoding="utf-8")
    assert main(["generate", "--image", str(not_image), "--audio", str(speech_2s), "-o", str(tmp_path / "x.mp4")]) == 1
    cli_line = capsys.readouterr().err.strip().removeprefix("avct: error: ").replace(str(not_image), not_image.name)
    assert cli_line.startswith("not a readable image: notes.png")

    silence = tmp_path / "silence.wav"
    import scipy.io.wavfile

    scipy.io.wavfile.write(silence, 16000, np.zeros(16000, np.int16))
    server = serve(max_audio_s=1.5)
    cases = [
        ((not_image, silence, {}), cli_line),
        ((EXAMPLE_IMAGE, silence, {}), "audio file silence.wav is silent (all samples equal); nothing to animate"),
        ((EXAMPLE_IMAGE, speech_2s, {}), "audio speech_2s.wav is 2.0 s long; at most 1.5 s are accepted"),
        ((EXAMPLE_IMAGE, silence, {"pose_scale": "7"}), "pose_scale must be between 0 and 3, got 7"),
        ((EXAMPLE_IMAGE, silence, {"colour": "red"}), "unknown option(s): colour"),
        ((EXAMPLE_IMAGE, silence, {"phonemes": "/etc/passwd"}),
         "option phonemes names a file on the server and is not accepted over HTTP"),
    ]
    for (image, audio, options), message in cases:
        reply = submit_job(server.url, image, audio, **options)
        assert (reply.status, reply.json()) == (422, {"detail": message})

    body, content_type = encode_multipart({"image": EXAMPLE_IMAGE})
    reply = request("POST", f"{server.url}/v1/jobs", body, {"Content-Type": content_type})
    assert (reply.status, reply.json()) == (422, {"detail": "missing file field 'audio' (send a multipart/form-data upload)"})
    assert server.job_folders() == []


def test_queue_bound_is_503_and_delete_cancels(serve, speech_2s):
    server = serve(workers=1, queue=1)
    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda _: submit_job(server.url, EXAMPLE_IMAGE, speech_2s), range(3)))
    codes = sorted(r.status for r in replies)
    assert codes in ([202, 202, 503], [202, 503, 503]), codes       # 1 running + 1 waiting at most
    busy = next(r for r in replies if r.status == 503)
    assert busy.headers["retry-after"] == "60" and "queue is full" in busy.json()["detail"]

    accepted = [r.json()["id"] for r in replies if r.status == 202]
    statuses = {job_id: job_status(server.url, job_id).json()["status"] for job_id in accepted}
    assert sorted(statuses.values()) in (["queued", "running"], ["running"]), statuses
    for job_id in accepted:
        assert request("DELETE", f"{server.url}/v1/jobs/{job_id}").status == 204
        assert job_status(server.url, job_id).status == 404
        assert request("GET", f"{server.url}/v1/jobs/{job_id}/video").status == 404
        assert request("DELETE", f"{server.url}/v1/jobs/{job_id}").status == 404
    # the queued job's files go at once; the running one's when it stops at its first frame
    wait_until(lambda: server.job_folders() == [], timeout=300, every=0.1)
    text = Path(server.work_dir.parent / "notes.txt")
    text.write_text("not a photo")
    assert submit_job(server.url, text, speech_2s).status == 422  # room again: checked, not refused with 503


def test_failed_job_reports_one_line_then_expires(serve, speech_2s):
    server = serve(max_job_s=0.001, keep_minutes=0.05)   # fails at its first frame; kept 3 s
    job_id = submit_job(server.url, EXAMPLE_IMAGE, speech_2s).json()["id"]
    status = wait_for_job(server.url, job_id, timeout=300)
    assert status["status"] == "failed" and status["error"] == "the job ran longer than this server's limit of 0.001 s"
    video = request("GET", f"{server.url}/v1/jobs/{job_id}/video")
    assert (video.status, video.json()) == (409, {"detail": "the job failed; there is no video"})
    assert len(server.job_folders()) == 1
    # the record goes first, its folder a moment later (outside the store's lock): wait for both
    wait_until(lambda: job_status(server.url, job_id).status == 404 and not server.job_folders(), timeout=3 + 5,
               every=0.1)
    assert server.job_folders() == []
    assert request("GET", f"{server.url}/v1/config").status == 200  # still serving
