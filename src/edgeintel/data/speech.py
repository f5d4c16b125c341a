"""``voice_commands``: spoken smart-home commands for keyword spotting (audio modality).

No recorded speech corpus ships in a registry package, so the speech is **synthetic**:
Debian's ``espeak-ng`` speaks each word in ``ACCENTS`` x ``VARIANTS`` voices (8 English
accents x 64 voice variants = 512 speakers), each speaker at its own speaking rate and
pitch drawn from ``RATE_WPM`` and ``PITCH``. Every clip is one second at 8 kHz, the word
at a random onset, mixed with **real recorded sound** that ships with pygame (a house-music
loop and four recorded effects: boom, car door, punch, whiff) at a signal-to-noise ratio
drawn from ``SNR_DB``. Classes: ten commands, ``silence`` (background only) and
``unknown`` (a word from ``UNKNOWN_WORDS``). A speaker's id is its voice variant
(``Dataset.groups``), so a group split holds voices out.

espeak-ng's CLI is deterministic, but a call costs ~0.1 s, so the speech is synthesised
once (one call per speaker, words separated by long pauses and cut at them) and kept in
the data cache (``edgeintel.data.cache``) under a digest of every generation setting and
espeak-ng's version; the noise mixing (cheap, seeded) runs on every load.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.data.cache import cached_arrays
from edgeintel.data.datasets import DATASETS, Dataset, Modality
from edgeintel.data.sensing import package_data
from edgeintel.errors import DataError

__all__ = [
    "ACCENTS",
    "COMMANDS",
    "NOISE_FILES",
    "SNR_DB",
    "UNKNOWN_WORDS",
    "VARIANTS",
    "SpeechCorpus",
    "espeak_version",
    "mix_at_snr",
    "noise_bank",
    "resample",
    "split_words",
    "synthesize_corpus",
    "voice_clips",
]

COMMANDS = ("yes", "no", "on", "off", "up", "down", "stop", "go", "lights", "music")
SILENCE, UNKNOWN = "silence", "unknown"
UNKNOWN_WORDS = (
    "bed", "bird", "cat", "dog", "happy", "house", "tree", "wow",
    "zero", "three", "seven", "left", "right", "marvin", "sheila", "learn",
)  # fmt: skip
ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan",
    "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)  # fmt: skip
"""espeak-ng's English voices (the MBROLA ones need another package)."""
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "adam", "Alex", "Alicia",
    "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb",
    "david", "Denis", "Diogo", "ed", "edward", "Gene", "gustave", "Henrique", "Hugo",
    "iven", "iven2", "Jacky", "john", "Lee", "linda", "Mario", "max", "Michael", "michel",
    "miguel", "Mike", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert",
    "sandro", "shelby", "steph", "travis", "victor",
)  # fmt: skip
"""64 espeak-ng voice variants (timbre, formants, breathiness): one speaker per accent each."""
SAMPLE_RATE = 8000
CLIP_S = 1.0
SNR_DB = (5.0, 10.0, 15.0, 20.0)
"""Signal-to-noise ratios (dB, word power over noise power) the clips are mixed at."""
RATE_WPM = (130, 190)
PITCH = (25, 75)
GAIN_DB = (-12.0, 6.0)
"""Overall level of a clip around speech at -20 dBFS RMS (near and far speakers)."""
NOISE_FILES = ("house_lo.wav", "boom.wav", "car_door.wav", "punch.wav", "whiff.wav")
"""pygame/examples/data recordings (11.025 kHz, 8 bit): music loop first, then effects."""
_PAUSE_MS = 1000
_MIN_GAP_S = 0.25
_LEVEL = 8  # |int16| at or below this is silence in espeak-ng's output


@dataclass(frozen=True)
class SpeechCorpus:
    """Every setting that shapes the synthesised speech (and so the cache key)."""

    accents: tuple[str, ...] = ACCENTS
    variants: tuple[str, ...] = VARIANTS
    commands: tuple[str, ...] = COMMANDS
    unknown_words: tuple[str, ...] = UNKNOWN_WORDS
    rate_wpm: tuple[int, int] = RATE_WPM
    pitch: tuple[int, int] = PITCH
    sample_rate: int = SAMPLE_RATE
    clip_s: float = CLIP_S
    seed: int = 0

    @property
    def classes(self) -> list[str]:
        return [*self.commands, SILENCE, UNKNOWN]

    @property
    def clip_len(self) -> int:
        return round(self.sample_rate * self.clip_s)


def espeak_version() -> str:
    """espeak-ng's version line, or a one-line DataError saying how to install it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataError(
            "dataset 'voice_commands' synthesises its speech with Debian's espeak-ng, which "
            "is not installed; install it with: apt-get install espeak-ng (or make espeak-ng)"
        )
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.split(" Data at")[0].strip()


def _speak(text: str, voice: str, rate: int, pitch: int, out: Path) -> tuple[int, np.ndarray]:
    """espeak-ng's int16 waveform of SSML ``text`` and its sample rate (Hz)."""
    from scipy.io import wavfile

    cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-m", "-w", str(out)]
    done = subprocess.run([*cmd, text], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.is_file():
        raise DataError(f"espeak-ng -v {voice} failed: {done.stderr.strip()[:200]}")
    sr, x = wavfile.read(out)
    return int(sr), np.asarray(x, dtype=np.int16)


def split_words(x: np.ndarray, n: int, rate_hz: int, min_gap_s: float = _MIN_GAP_S) -> list[slice]:
    """The ``n`` spoken stretches of ``x`` separated by silences of at least ``min_gap_s``
    seconds (|x| <= a few LSB), leading and trailing silence dropped; ``[]`` when the
    recording does not fall into exactly ``n`` stretches."""
    active = np.flatnonzero(np.abs(x.astype(np.int32)) > _LEVEL)
    if len(active) == 0:
        return []
    breaks = np.flatnonzero(np.diff(active) > int(min_gap_s * rate_hz))
    starts = np.concatenate([[active[0]], active[breaks + 1]])
    ends = np.concatenate([active[breaks] + 1, [active[-1] + 1]])
    if len(starts) != n:
        return []
    return [slice(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """``x`` (float) at ``rate_out`` Hz: polyphase resampling with an anti-alias filter."""
    from scipy.signal import resample_poly

    g = math.gcd(rate_in, rate_out)
    return np.asarray(resample_poly(x, rate_out // g, rate_in // g), dtype=np.float64)


def _speaker_words(
    corpus: SpeechCorpus, voice: str, rate: int, pitch: int, words: list[str], tmp: Path
) -> list[np.ndarray]:
    """Each of ``words`` spoken by ``voice`` (int16 at espeak's rate, then resampled):
    one call with long pauses, cut at the pauses; word by word if the cut fails."""
    pause = f'<break time="{_PAUSE_MS}ms"/>'
    sr, x = _speak(f"<speak>{pause.join(words)}</speak>", voice, rate, pitch, tmp / "all.wav")
    cuts = split_words(x, len(words), sr)
    if not cuts:  # the pauses did not separate the words: one call per word
        return [_one_word(corpus, w, voice, rate, pitch, tmp) for w in words]
    y = resample(x.astype(np.float64), sr, corpus.sample_rate)  # once: the filter is long
    ratio = corpus.sample_rate / sr
    return [y[int(c.start * ratio) : math.ceil(c.stop * ratio)] for c in cuts]


def _one_word(
    corpus: SpeechCorpus, word: str, voice: str, rate: int, pitch: int, tmp: Path
) -> np.ndarray:
    sr, one = _speak(f"<speak>{word}</speak>", voice, rate, pitch, tmp / "one.wav")
    cut = split_words(one, 1, sr, min_gap_s=10.0)
    return resample((one[cut[0]] if cut else one).astype(np.float64), sr, corpus.sample_rate)


def synthesize_corpus(corpus: SpeechCorpus) -> dict[str, np.ndarray]:
    """Every speaker's commands and one unknown word, each placed at a random onset in a
    silent clip: ``speech`` (N, clip_len) int16, ``label``, ``accent``, ``variant``,
    ``onset`` and ``length`` (samples of the word), ``rate`` (wpm), ``pitch``."""
    espeak_version()
    L = corpus.clip_len
    rows: dict[str, list[Any]] = {k: [] for k in ("speech", "label", "accent", "variant")}
    rows.update({k: [] for k in ("onset", "length", "rate", "pitch")})
    unknown = len(corpus.commands) + 1
    with tempfile.TemporaryDirectory(prefix="edgeintel-espeak-") as tmp:
        for a, accent in enumerate(corpus.accents):
            for v, variant in enumerate(corpus.variants):
                rng = np.random.default_rng([corpus.seed, a, v])
                rate = int(rng.integers(corpus.rate_wpm[0], corpus.rate_wpm[1] + 1))
                pitch = int(rng.integers(corpus.pitch[0], corpus.pitch[1] + 1))
                extra = str(rng.choice(corpus.unknown_words))
                words = [*corpus.commands, extra]
                spoken = _speaker_words(
                    corpus, f"{accent}+{variant}", rate, pitch, words, Path(tmp)
                )
                for k, wave in enumerate(spoken):
                    wave = wave[:L] if len(wave) > L else wave
                    onset = int(rng.integers(0, L - len(wave) + 1))
                    clip = np.zeros(L, dtype=np.int16)
                    clip[onset : onset + len(wave)] = np.clip(np.round(wave), -32768, 32767)
                    rows["speech"].append(clip)
                    rows["label"].append(k if k < len(corpus.commands) else unknown)
                    rows["onset"].append(onset)
                    rows["length"].append(len(wave))
                    rows["accent"].append(a)
                    rows["variant"].append(v)
                    rows["rate"].append(rate)
                    rows["pitch"].append(pitch)
    out = {k: np.asarray(v) for k, v in rows.items()}
    out["speech"] = np.stack(rows["speech"]).astype(np.int16)
    return out


def noise_bank(rate_hz: int) -> list[np.ndarray]:
    """The ``NOISE_FILES`` recordings at ``rate_hz`` Hz, float in [-1, 1], music loop first."""
    from scipy.io import wavfile

    out = []
    for name in NOISE_FILES:
        path = package_data(
            "pygame", "examples", "data", name, what="dataset 'voice_commands' (noise)"
        )
        with warnings.catch_warnings():  # pygame's files carry a LIST chunk wavfile skips
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            sr, x = wavfile.read(path)
        x = np.asarray(x, dtype=np.float64)
        x = (x - 128.0) / 128.0 if x.max() > 1.5 and x.min() >= 0 else x / 32768.0
        out.append(resample(x - x.mean(), int(sr), rate_hz))
    return out


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, active: slice) -> np.ndarray:
    """``speech + noise``, the noise scaled so that the word's power (over ``active``)
    is ``snr_db`` dB above the noise's power (over the whole clip)."""
    p_s = float(np.mean(speech[active].astype(np.float64) ** 2))
    p_n = float(np.mean(noise.astype(np.float64) ** 2))
    if p_n == 0.0:
        return speech.astype(np.float64)
    scale = math.sqrt(p_s / (p_n * 10.0 ** (snr_db / 10.0)))
    return speech.astype(np.float64) + scale * noise


def _background(bank: list[np.ndarray], length: int, rng: np.random.Generator) -> np.ndarray:
    """A second of home background: a window of the music loop, and half the time one
    recorded effect at a random moment, as loud as the music within a factor of two."""
    music = bank[0]
    start = int(rng.integers(0, len(music)))
    out = np.resize(np.roll(music, -start), length).astype(np.float64)
    if rng.random() < 0.5:
        effect = bank[1 + int(rng.integers(0, len(bank) - 1))][:length]
        at = int(rng.integers(0, length - len(effect) + 1))
        rms_m = math.sqrt(float(np.mean(out**2))) or 1.0
        rms_e = math.sqrt(float(np.mean(effect**2))) or 1.0
        out[at : at + len(effect)] += effect * rms_m / rms_e * float(rng.uniform(0.5, 2.0))
    return out


def voice_clips(
    corpus: SpeechCorpus, speech: dict[str, np.ndarray], bank: list[np.ndarray], seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mixed clips ``(N, 1, L)`` float32 in [-1, 1], labels, variant (speaker) ids and the
    SNR (dB) of each: the spoken clips plus one ``silence`` clip per speaker, each over its
    own background at an SNR from ``SNR_DB`` and a level from ``GAIN_DB``."""
    L = corpus.clip_len
    silence = len(corpus.commands)
    n_sp = len(speech["label"])
    first = np.flatnonzero(np.r_[True, np.diff(speech["variant"] + 1000 * speech["accent"]) != 0])
    n = n_sp + len(first)
    x = np.zeros((n, 1, L), dtype=np.float32)
    y = np.concatenate([speech["label"], np.full(len(first), silence)]).astype(np.int64)
    groups = np.concatenate([speech["variant"], speech["variant"][first]]).astype(np.int64)
    snr = np.zeros(n)
    rng = np.random.default_rng([seed, 20])
    target = 0.1  # speech at -20 dBFS RMS over the word
    for i in range(n):
        noise = _background(bank, L, rng)
        snr[i] = float(rng.choice(SNR_DB))
        gain = 10.0 ** (float(rng.uniform(*GAIN_DB)) / 20.0)
        if i < n_sp:
            s = speech["speech"][i].astype(np.float64)
            act = slice(int(speech["onset"][i]), int(speech["onset"][i] + speech["length"][i]))
            s *= target / max(math.sqrt(float(np.mean(s[act] ** 2))), 1e-9)
            clip = mix_at_snr(s, noise, snr[i], act)
        else:
            rms = max(math.sqrt(float(np.mean(noise**2))), 1e-9)
            clip = noise * target * 10.0 ** (-snr[i] / 20.0) / rms
        x[i, 0] = np.clip(clip * gain, -1.0, 1.0)
    return x, y, groups, snr


@DATASETS.register("voice_commands")
def _voice_commands(**_: Any) -> Dataset:
    corpus = SpeechCorpus()
    settings = {**asdict(corpus), "espeak": espeak_version(), "pause_ms": _PAUSE_MS}
    speech = cached_arrays("voice_commands", settings, lambda: synthesize_corpus(corpus))
    x, y, groups, _snr = voice_clips(corpus, speech, noise_bank(corpus.sample_rate))
    return Dataset(
        name="voice_commands",
        x=x,
        y=y,
        classes=corpus.classes,
        modality=Modality.AUDIO,
        description=(
            "SYNTHETIC speech: 10 smart-home voice commands, silence and unknown words, "
            f"1 s at {corpus.sample_rate // 1000} kHz, spoken by espeak-ng "
            f"({len(corpus.accents)} English accents x {len(corpus.variants)} voice variants, "
            f"rate {corpus.rate_wpm[0]}-{corpus.rate_wpm[1]} wpm, pitch "
            f"{corpus.pitch[0]}-{corpus.pitch[1]}) over REAL recorded sound from pygame "
            f"(music loop, door, boom, punch, whiff) at {'/'.join(f'{s:g}' for s in SNR_DB)} "
            "dB SNR; speakers (voice variants) are the groups"
        ),
        sampling_rate_hz=float(corpus.sample_rate),
        groups=groups,
        source=f"synthesised with {settings['espeak']}; noise: pygame/examples/data "
        + ", ".join(NOISE_FILES),
        extra={
            "synthetic": True,
            "accents": list(corpus.accents),
            "variants": list(corpus.variants),
            "snr_db": list(SNR_DB),
            "commands": list(corpus.commands),
            "unknown_words": list(corpus.unknown_words),
            "group_is": "speaker (espeak-ng voice variant)",
        },
    )
