"""Coverage-guided fuzzing of the readers with atheris (libFuzzer for Python).

Where ``test_fuzz_readers`` mutates the seeds blindly, libFuzzer keeps every input that
reaches new branches of ``aooct_core``'s readers and of the decoders they call (tifffile,
pydicom, numpy's ``.npy`` header parser, Pillow's PNG plugin, the JSON checks), so it walks
into the size, length and nesting checks rather than around them.

An input is one selector byte — which file type (``.tif``, ``.npy``, ``.dcm``, ``.png``,
``.json``) — and the file's bytes. Every reader for that type (``fuzz_harness.READERS``)
reads it; it must return or raise :class:`aooct_core.io.InputError`. Anything else, a
``MemoryError`` under the 2 GiB address-space cap, or a reader running past ``-timeout``
is a crash: libFuzzer writes the input to ``-artifact_prefix`` and exits non-zero. Save such
a file, without its first byte, in ``crashers/`` with the suffix it names, and
``test_regressions`` reads it on every run.

Run::

    python tests/fuzz/atheris_readers.py CORPUS_DIR -max_total_time=600 -timeout=20

``CORPUS_DIR`` is filled with the code-made seeds first (``fuzz_seeds``) when empty. The
default suite runs it for ~25 s (``test_coverage_fuzz``), ``make test-slow`` for 5 min.
"""
from __future__ import annotations

import logging
import os
import resource
import sys
import tempfile
import warnings
from pathlib import Path

SUFFIXES = (".tif", ".npy", ".dcm", ".png", ".json")
CAP_BYTES = 2 << 30


def encode(suffix: str, data: bytes) -> bytes:
    """A corpus entry: the selector byte for ``suffix``, then the file's bytes."""
    return bytes([SUFFIXES.index(suffix)]) + data


def decode(entry: bytes) -> tuple[str, bytes]:
    """``(suffix, file bytes)`` of a corpus entry (any first byte selects a type)."""
    return SUFFIXES[entry[0] % len(SUFFIXES)], entry[1:]


def write_seed_corpus(folder: Path) -> int:
    from fuzz_seeds import all_seeds

    folder.mkdir(parents=True, exist_ok=True)
    seeds = all_seeds()
    for name, suffix, data in seeds:
        (folder / f"seed-{name}").write_bytes(encode(suffix, data))
    return len(seeds)


def main(argv: list[str]) -> None:
    import atheris

    sys.path.insert(0, str(Path(__file__).parent))
    logging.disable(logging.CRITICAL)     # the decoders log every oddity they tolerate
    warnings.simplefilter("ignore")
    # Everything the readers run is imported here, instrumented, before anything else
    # (the seed writer) imports the decoders uninstrumented.
    with atheris.instrument_imports(include=["aooct_core", "tifffile", "pydicom", "PIL",
                                             "numpy.lib.format", "numpy.lib._format_impl"]):
        import PIL.PngImagePlugin  # noqa: F401
        import pydicom  # noqa: F401
        import tifffile  # noqa: F401

        from aooct_core.io import InputError
        from fuzz_harness import READERS, prepare_folder, place_input, run_reader
    corpus = next((Path(a) for a in argv[1:] if not a.startswith("-")), None)
    if corpus is not None and not any(corpus.glob("*")):
        write_seed_corpus(corpus)
    folder = Path(tempfile.mkdtemp(prefix="aooct-atheris-"))
    prepare_folder(folder)
    resource.setrlimit(resource.RLIMIT_AS, (CAP_BYTES, CAP_BYTES))

    def one_input(entry: bytes) -> None:
        if not entry:
            return
        suffix, data = decode(entry)
        for reader in READERS[suffix]:
            path = place_input(folder, reader, suffix, data)
            try:
                run_reader(reader, path)
            except InputError:
                pass
            finally:
                path.unlink(missing_ok=True)

    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv)
