"""The synthesised voice-command corpus: cutting words at pauses, mixing at a stated SNR,
the settings-keyed cache, and espeak-ng's determinism on a tiny corpus."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeintel.data import speech
from edgeintel.data.cache import cached_arrays, settings_key
from edgeintel.errors import DataError

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make espeak-ng)"
)


def test_split_words_cuts_at_long_silences_only() -> None:
    x = np.zeros(100, dtype=np.int16)
    x[10:20] = 1000  # word 1
    x[22:25] = -900  # a 2-sample closure inside word 1 ("stop"): not a cut
    x[60:70] = 500  # word 2, after a 35-sample pause
    cuts = speech.split_words(x, 2, rate_hz=100, min_gap_s=0.2)
    assert cuts == [slice(10, 25), slice(60, 70)]
    assert speech.split_words(x, 3, rate_hz=100, min_gap_s=0.2) == []  # wrong count: refuse
    assert speech.split_words(np.zeros(50, dtype=np.int16), 1, rate_hz=100) == []


def test_mix_at_snr_gives_the_stated_ratio() -> None:
    rng = np.random.default_rng(0)
    s = np.zeros(1000)
    s[200:400] = rng.normal(0, 0.3, 200)
    n = rng.normal(0, 1.0, 1000)
    out = speech.mix_at_snr(s, n, 10.0, slice(200, 400))
    noise = out - s
    snr = 10 * math.log10(np.mean(s[200:400] ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(10.0, abs=1e-9)
    assert np.array_equal(speech.mix_at_snr(s, np.zeros(1000), 5.0, slice(200, 400)), s)


def test_cached_arrays_builds_once_per_settings(tmp_path: Path) -> None:
    calls: list[int] = []

    def build() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"a": np.arange(len(calls) + 2)}

    first = cached_arrays("t", {"k": 1}, build, folder=tmp_path)
    again = cached_arrays("t", {"k": 1}, build, folder=tmp_path)
    assert len(calls) == 1 and np.array_equal(first["a"], again["a"])
    cached_arrays("t", {"k": 2}, build, folder=tmp_path)  # another setting: another file
    assert len(calls) == 2
    assert settings_key({"a": 1, "b": 2}) == settings_key({"b": 2, "a": 1})
    path = tmp_path / f"t-{settings_key({'k': 1})}.npz"
    path.write_bytes(b"damaged")
    cached_arrays("t", {"k": 1}, build, folder=tmp_path)  # a damaged file is rebuilt
    assert len(calls) == 3


def test_missing_espeak_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech.shutil, "which", lambda _name: None)
    with pytest.raises(DataError, match="apt-get install espeak-ng") as err:
        speech.espeak_version()
    assert "\n" not in str(err.value)


def test_noise_bank_is_pygames_real_recordings() -> None:
    bank = speech.noise_bank(8000)
    assert len(bank) == len(speech.NOISE_FILES)
    assert 6.5 < len(bank[0]) / 8000 < 7.5  # house_lo.wav: 7.1 s of music
    assert all(np.abs(b).max() <= 1.2 and np.std(b) > 0.01 for b in bank)  # resampled 8-bit


@needs_espeak
def test_tiny_corpus_is_deterministic_and_mixed() -> None:
    corpus = speech.SpeechCorpus(accents=("en-us", "en-gb"), variants=("m1", "f2"))
    a = speech.synthesize_corpus(corpus)
    b = speech.synthesize_corpus(corpus)
    assert np.array_equal(a["speech"], b["speech"])  # espeak-ng's CLI is deterministic
    words = len(corpus.commands) + 1
    assert a["speech"].shape == (4 * words, corpus.clip_len)
    # every word was spoken: 0.1-1 s of sound inside its clip
    assert ((a["length"] > 800) & (a["length"] <= corpus.clip_len)).all()
    assert set(a["label"].tolist()) == {*range(len(corpus.commands)), words}  # unknown = 11
    x, y, groups, snr = speech.voice_clips(corpus, a, speech.noise_bank(corpus.sample_rate))
    assert x.shape == (4 * (words + 1), 1, corpus.clip_len) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [4] * len(corpus.classes)  # one silence per speaker
    assert np.abs(x).max() <= 1.0 and set(snr.tolist()) <= set(speech.SNR_DB)
    assert sorted(set(groups.tolist())) == [0, 1]  # speakers are the voice variants
