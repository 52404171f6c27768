#!/usr/bin/env python3
"""Generate the audio fixtures under fixtures/generated/ (git-ignored).

German caller speech: every line of fixtures/de/utterances.tsv spoken by
espeak-ng in three voice variants at two rates, trimmed of leading/trailing
silence, as 16 kHz and 8 kHz mono 16-bit WAV, listed in
de/transcripts.tsv (file, text, voice, rate, intent, slots).

German caller scripts: a few utterances joined by known pauses, with the
speech regions in milliseconds (de/scripts.tsv), for VAD/endpointing tests.

Sounds over a reply (overlap/overlaps.tsv: file, kind, text): German
listener feedback spoken by espeak-ng ("Ja.", "mhm", "Genau." …, three
voices), noises made with sox (coughs, clicks, a knock), and real
interruptions, for the reversible barge-in.

English human speech: prompts from Debian's asterisk-core-sounds-en-wav
(8 kHz, real voice) with their transcripts from core-sounds-en.txt.gz.

Regenerates only when the inputs (this script, the utterance list, the
espeak-ng version) change: a stamp file records their hash.
"""
import gzip
import hashlib
import shutil
import subprocess
import sys
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "fixtures" / "generated"
UTTERANCES = REPO / "fixtures" / "de" / "utterances.tsv"
VOICES = ["de", "de+f3", "de+m3"]
RATES = [150, 185]
EN_SOUNDS = Path("/usr/share/asterisk/sounds/en")
EN_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
EN_PROMPTS = [
    "agent-loginok", "agent-newlocation", "agent-pass", "all-circuits-busy-now",
    "auth-incorrect", "call-forwarding", "cannot-complete-as-dialed",
    "check-number-dial-again", "conf-getpin", "conf-onlyperson", "conf-thereare",
    "demo-congrats", "demo-echotest", "demo-thanks", "followme/pls-hold-while-try",
    "hello-world", "invalid", "pbx-invalid", "pbx-transfer", "privacy-incorrect",
    "queue-thankyou", "transfer", "vm-goodbye", "vm-intro", "vm-login",
    "vm-no", "vm-password", "vm-theperson",
]
# (script id, utterance ids, pause after each in ms)
SCRIPTS = [
    ("script_01", ["greet_02", "book_02", "yes_02"], [900, 1200, 600]),
    ("script_02", ["hours_01", "human_01", "no_02"], [700, 1000, 800]),
]


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def read_pcm(path: Path) -> tuple[int, bytes]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.getframerate(), w.readframes(w.getnframes())


def write_pcm(path: Path, rate: int, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def inputs_hash() -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(UTTERANCES.read_bytes())
    h.update(subprocess.run(["espeak-ng", "--version"], capture_output=True).stdout)
    return h.hexdigest()


def german() -> int:
    de = OUT / "de"
    de.mkdir(parents=True, exist_ok=True)
    rows = [l.split("\t") for l in UTTERANCES.read_text(encoding="utf-8").splitlines()[1:] if l]
    lines = ["file\ttext\tvoice\trate\tsample_rate\tintent\tslots"]
    tmp = de / "tmp.wav"
    for uid, text, intent, slots in rows:
        for vi, voice in enumerate(VOICES):
            for rate in RATES:
                run("espeak-ng", "-v", voice, "-s", str(rate), "-w", str(tmp), text)
                for sr in (16000, 8000):
                    name = f"{uid}_v{vi}_r{rate}_{sr // 1000}k.wav"
                    # Trim silence at both ends so the speech regions are known.
                    run("sox", "-R", str(tmp), "-r", str(sr), "-c", "1", "-b", "16", str(de / name),
                        "silence", "1", "0.005", "-45d", "reverse",
                        "silence", "1", "0.005", "-45d", "reverse")
                    lines.append(f"{name}\t{text}\t{voice}\t{rate}\t{sr}\t{intent}\t{slots}")
    tmp.unlink(missing_ok=True)
    (de / "transcripts.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    texts = {r[0]: r[1] for r in rows}
    slines = ["file\tsample_rate\tlead_ms\tsegments"]
    for sid, uids, pauses in SCRIPTS:
        for sr in (16000, 8000):
            lead_ms = 500
            pcm = b"\0\0" * (sr * lead_ms // 1000)
            segments = []
            for uid, pause in zip(uids, pauses):
                _, speech = read_pcm(de / f"{uid}_v0_r150_{sr // 1000}k.wav")
                start = len(pcm) // 2 * 1000 // sr
                pcm += speech
                end = len(pcm) // 2 * 1000 // sr
                segments.append(f"{start}-{end}:{texts[uid]}")
                pcm += b"\0\0" * (sr * pause // 1000)
            name = f"{sid}_{sr // 1000}k.wav"
            write_pcm(de / name, sr, pcm)
            slines.append(f"{name}\t{sr}\t{lead_ms}\t{'|'.join(segments)}")
    (de / "scripts.tsv").write_text("\n".join(slines) + "\n", encoding="utf-8")
    return len(lines) - 1


# (id, what espeak-ng is given, the words) of listener feedback
BACKCHANNELS = [
    ("ja", "Ja.", "Ja."),
    ("mhm", "[[m@hm]]", "Mhm."),
    ("hmhm", "Hm hm.", "Hm hm."),
    ("genau", "Genau.", "Genau."),
    ("okay", "Okay.", "Okay."),
    ("aha", "Aha.", "Aha."),
    ("jagenau", "Ja, genau.", "Ja, genau."),
]
# (id, sox synth arguments of each burst, gap between bursts in s)
NOISES = [
    ("cough_1", [["0.16", "pinknoise", "sinc", "300-3000", "fade", "h", "0.01", "0.16", "0.1", "gain", "-n", "-8"],
                 ["0.12", "pinknoise", "sinc", "300-3000", "fade", "h", "0.01", "0.12", "0.08", "gain", "-n", "-10"]], 0.08),
    ("cough_2", [["0.22", "brownnoise", "sinc", "200-2500", "fade", "h", "0.01", "0.22", "0.15", "gain", "-n", "-6"]], 0.0),
    ("click_1", [["0.012", "whitenoise", "gain", "-n", "-3"]], 0.0),
    ("click_2", [["0.01", "whitenoise", "gain", "-n", "-6"], ["0.01", "whitenoise", "gain", "-n", "-6"]], 0.15),
    ("knock", [["0.25", "brownnoise", "lowpass", "400", "fade", "q", "0.005", "0.25", "0.22", "gain", "-n", "-4"]], 0.0),
    ("breath", [["0.35", "pinknoise", "highpass", "1500", "fade", "h", "0.1", "0.35", "0.2", "gain", "-n", "-28"]], 0.0),
]
INTERRUPTIONS = [
    ("stop_1", "Nein, warten Sie bitte."),
    ("stop_2", "Moment, ich möchte absagen."),
    ("stop_3", "Ich möchte einen Termin absagen."),
]


def overlaps() -> int:
    out = OUT / "overlap"
    out.mkdir(parents=True, exist_ok=True)
    lines = ["file\tkind\ttext"]
    tmp = out / "tmp.wav"
    trim = ["silence", "1", "0.005", "-45d", "reverse", "silence", "1", "0.005", "-45d", "reverse"]
    for uid, spoken, text in BACKCHANNELS:
        for vi, voice in enumerate(VOICES):
            run("espeak-ng", "-v", voice, "-s", "185", "-w", str(tmp), spoken)
            name = f"{uid}_v{vi}.wav"
            run("sox", "-R", str(tmp), "-r", "16000", "-c", "1", "-b", "16", str(out / name), *trim)
            lines.append(f"{name}\tbackchannel\t{text}")
    for uid, bursts, gap in NOISES:
        parts = []
        for i, burst in enumerate(bursts):
            part = out / f"tmp{i}.wav"
            run("sox", "-R", "-n", "-r", "16000", "-c", "1", "-b", "16", str(part), "synth", *burst,
                "pad", "0", str(gap if i + 1 < len(bursts) else 0))
            parts.append(str(part))
        run("sox", *parts, str(out / f"{uid}.wav"))
        for part in parts:
            Path(part).unlink()
        lines.append(f"{uid}.wav\tnoise\t")
    for uid, text in INTERRUPTIONS:
        run("espeak-ng", "-v", "de", "-s", "160", "-w", str(tmp), text)
        run("sox", "-R", str(tmp), "-r", "16000", "-c", "1", "-b", "16", str(out / f"{uid}.wav"), *trim)
        lines.append(f"{uid}.wav\tinterruption\t{text}")
    tmp.unlink(missing_ok=True)
    (out / "overlaps.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines) - 1


def english() -> int:
    en = OUT / "en"
    en.mkdir(parents=True, exist_ok=True)
    if not EN_TEXT.exists():
        sys.exit("make_fixtures: asterisk-core-sounds-en is not installed")
    texts = {}
    for line in gzip.decompress(EN_TEXT.read_bytes()).decode("utf-8", "replace").splitlines():
        if ":" in line and not line.startswith(";"):
            key, text = line.split(":", 1)
            texts[key.strip()] = text.strip()
    lines = ["file\ttext"]
    for key in EN_PROMPTS:
        src = EN_SOUNDS / f"{key}.wav"
        if key not in texts or not src.exists():
            continue
        name = key.replace("/", "_") + ".wav"
        shutil.copyfile(src, en / name)
        lines.append(f"{name}\t{texts[key]}")
    (en / "transcripts.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if len(lines) - 1 < 20:
        sys.exit(f"make_fixtures: only {len(lines) - 1} English prompts found")
    return len(lines) - 1


def main() -> int:
    stamp = OUT / ".stamp"
    digest = inputs_hash()
    if stamp.exists() and stamp.read_text() == digest:
        return 0
    if OUT.exists():
        shutil.rmtree(OUT)
    n_de = german()
    n_ov = overlaps()
    n_en = english()
    stamp.write_text(digest)
    print(f"    {n_de} German clips, {n_ov} sounds over replies, {n_en} English prompts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
