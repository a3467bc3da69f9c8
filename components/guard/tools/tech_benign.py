"""Benign technical text for training the scorer: code, doc comments and
READMEs of the crates in the repository's Cargo.lock (from the local cargo
registry; `cargo fetch` gets exactly these versions).

The dev set's benign rows are short natural-language questions, while its
jailbreak rows are long and structured; a scorer trained on them alone learns
that any code, markdown table or long technical text is an injection. These
chunks (labelled benign) teach it otherwise. Code is also wrapped in a short
English or Chinese question ("这段代码有什么问题？"), as users send it.
Deterministic for a given Cargo.lock and seed.
"""

import glob
import os
import random
import re

QUESTIONS_EN = ["What does this code do?", "Why doesn't this compile?", "Can you review this?",
                "Explain this snippet:", "How can I make this faster?", "Is there a bug here?",
                "Summarize this README section:", "Rewrite this more clearly:"]
QUESTIONS_ZH = ["这段代码是做什么的？", "这段代码为什么编译不过？", "帮我审查一下这段代码：", "解释一下这段代码：",
                "怎么让这段代码更快？", "这里有 bug 吗？", "帮我总结一下这段文档：", "请把下面的说明翻译成中文："]


def registry_dirs(repo):
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    roots = sorted(glob.glob(os.path.join(cargo_home, "registry", "src", "*")))
    with open(os.path.join(repo, "Cargo.lock"), encoding="utf-8") as f:
        lock = f.read()
    pkgs = re.findall(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"\nsource = "registry', lock)
    dirs = []
    for name, version in sorted(set(pkgs)):
        for root in roots:
            d = os.path.join(root, f"{name}-{version}")
            if os.path.isdir(d):
                dirs.append(d)
                break
    return dirs


def chunks_of(text, rng):
    paras = [p.strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]
    if not paras:
        return []
    out = []
    for _ in range(2):
        start = rng.randrange(len(paras))
        target = rng.choice([80, 200, 400, 800, 1500])
        chunk = ""
        for p in paras[start:]:
            if chunk and len(chunk) + len(p) > target:
                break
            chunk = (chunk + "\n\n" + p) if chunk else p
        chunk = chunk[:1900].strip()
        if len(chunk) >= 20:
            out.append(chunk)
    return out


def generate(repo, seed, n=1200):
    rng = random.Random(seed)
    files = []
    for d in registry_dirs(repo):
        files += sorted(glob.glob(os.path.join(d, "README*.md")))
        files += sorted(glob.glob(os.path.join(d, "src", "**", "*.rs"), recursive=True))[:20]
    if not files:
        return []
    rng.shuffle(files)
    rows, seen = [], set()
    for path in files:
        if len(rows) >= n:
            break
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(200_000)
        except (UnicodeDecodeError, OSError):
            continue
        for c in chunks_of(text, rng):
            if c in seen:
                continue
            seen.add(c)
            r = rng.random()
            zh = False
            if r < 0.15:
                c = rng.choice(QUESTIONS_EN) + "\n" + c
            elif r < 0.30:
                c = rng.choice(QUESTIONS_ZH) + "\n" + c
                zh = True
            zh = zh or any("\u4e00" <= ch <= "\u9fff" for ch in c)
            rows.append({"text": c, "y": 0, "lang": "zh" if zh else "en", "src": "tech"})
    return rows[:n]
