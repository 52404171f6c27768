"""Reference values for the Smart Turn v3.2 front end and model.

Not part of the setup: run by hand when the reference changes, with numpy
and onnxruntime installed and the pipecat-ai 1.14.0 wheel unpacked in
PYTHONPATH (its numpy feature extractor is the definition we test against):

    python3 scripts/reference/smart_turn_features.py FIXTURES MODEL > models/tests/smart_turn_reference.in

Prints a Rust array of (file, [(mel, frame, value)...], probability).
"""
import sys
import wave

import numpy as np
import onnxruntime as ort
from pipecat.audio.turn.smart_turn._whisper_features import compute_whisper_log_mel_features

FILES = ["de/book_10_v0_r150_16k.wav", "de/pause_01_v1_r150_16k.wav", "de/yes_01_v2_r185_16k.wav"]
POINTS = [(m, f) for m in (0, 7, 20, 39, 55, 79) for f in (0, 400, 640, 700, 760, 799)]


def load(path):
    with wave.open(path) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def main():
    fixtures, model = sys.argv[1], sys.argv[2]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    print("[")
    for name in FILES:
        audio = load(f"{fixtures}/{name}")[-128000:]
        audio = np.pad(audio, (128000 - len(audio), 0))
        feats = compute_whisper_log_mel_features(audio, do_normalize=True)
        prob = session.run(None, {"input_features": feats[None]})[0][0].item()
        points = ", ".join(f"({m}, {f}, {feats[m, f]:.6f})" for m, f in POINTS)
        print(f'    ("{name}", &[{points}], {prob:.6f}),')
    print("]")


main()
