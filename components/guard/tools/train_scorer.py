#!/usr/bin/env python3
"""Trains the guard's injection scorer and writes src/scorer_weights.rs.

The scorer is a logistic regression over hashed character n-grams (1-4) and
word uni/bigrams of the guard's own normalised text. Features come from the
guard crate itself (`cargo run -p guard --example featurize`), so training and
the component always agree on normalisation and hashing.

Data:
- the dev set (`../shared/data/guard-dev.jsonl` from the repository root);
- optionally (`--pyrit DIR`, an unpacked `pyrit==1.1.0` wheel from PyPI,
  MIT-licensed): its jailbreak templates (label injection), its system-prompt
  extraction seeds (injection) and its harmful-request seeds, AdvBench and the
  AI Red Team sets (label benign: harmful requests are not prompt
  injections). Its `in_the_wild` templates and garak seeds are NOT used: they
  are the sources the dev and hold-out sets were drawn from. Every extra text
  with a character 5-gram Jaccard similarity of 0.5 or more with one of those,
  or with a dev row, is dropped too;
- synthetic ordinary requests (`tools/synth_benign.py`) and code, doc comments
  and READMEs of the crates in Cargo.lock (`tools/tech_benign.py`), benign.

Method: 5-fold cross-validation on the dev rows, folds grouped by
near-duplicate cluster (5-gram Jaccard >= 0.5) and stratified by language and
label; extra rows are always in the training part. The threshold is chosen on
the out-of-fold scores, combined with the rules exactly as the guard combines
them (block when rules >= 0.5 or scorer >= threshold): the one with the
largest margin to the targets (recall >= 0.95, FPR <= 0.03) in the worse
language, so that neither target is met only by a hair.
Then a final model is trained on everything.

Only the standard library plus PyYAML (for the PyRIT files) is needed; the
run is deterministic. Run from components/guard: `make -C components/guard train`.
"""

import argparse
import glob
import json
import math
import os
import random
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synth_benign  # noqa: E402
import tech_benign  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # components/guard
REPO = os.path.dirname(os.path.dirname(ROOT))
SEED = 20240601


# ── data ────────────────────────────────────────────────────────────────────

def load_dev(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.append({"text": r["text"], "y": 1 if r["label"] == "injection" else 0,
                             "lang": r.get("lang", "en"), "src": "dev",
                             "cat": r.get("category", "")})
    return rows


def shingles(text, n=5):
    t = re.sub(r"\s+", " ", text.lower()).strip()
    if len(t) < n:
        return {t}
    return {t[i:i + n] for i in range(len(t) - n + 1)}


def jaccard(a, b):
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def is_cjk(s):
    return any("\u4e00" <= c <= "\u9fff" for c in s)


def load_pyrit(root):
    """Extra rows from an unpacked pyrit wheel, plus the texts to decontaminate against."""
    import yaml  # PyYAML, pinned in the Makefile

    base = os.path.join(root, "pyrit", "datasets")
    if not os.path.isdir(base):
        sys.exit(f"no pyrit/datasets under {root}")
    rng = random.Random(SEED)

    def seeds(path):
        with open(path, encoding="utf-8") as f:
            d = yaml.safe_load(f)
        return [s["value"] for s in d.get("seeds", []) if isinstance(s.get("value"), str)]

    harmful = seeds(os.path.join(base, "seed_datasets/local/adv_bench.prompt"))
    for p in sorted(glob.glob(os.path.join(base, "seed_datasets/local/airt/*.prompt"))):
        if os.path.basename(p) in ("leakage.prompt",):
            continue
        harmful += seeds(p)
    harmful = [h.strip() for h in harmful if 10 <= len(h.strip()) < 2000]

    extra = []
    for h in harmful:
        extra.append({"text": h, "y": 0, "lang": "zh" if is_cjk(h) else "en", "src": "pyrit-harmful"})

    # Jailbreak templates (not the in-the-wild ones).
    tpl_files = sorted(glob.glob(os.path.join(base, "jailbreak/templates/**/*.yaml"), recursive=True))
    wild_texts = []
    for p in tpl_files:
        with open(p, encoding="utf-8") as f:
            try:
                d = yaml.safe_load(f)
            except yaml.YAMLError:
                continue
        v = d.get("value") if isinstance(d, dict) else None
        if not isinstance(v, str):
            continue
        rel = os.path.relpath(p, base)
        if "/in_the_wild/" in rel:
            wild_texts.append(v)
            continue
        if "benign" in rel or "multi_parameter" in rel:
            continue
        obj = rng.choice(harmful)
        text = re.sub(r"\{\{\s*prompt\s*\}\}", obj, v).strip()
        if "{{" in text or len(text) >= 2000 or len(text) < 20:
            continue
        extra.append({"text": text, "y": 1, "lang": "zh" if is_cjk(text) else "en",
                      "src": "pyrit-jailbreak"})

    # System-prompt extraction seeds (numbered, `|`-separated).
    with open(os.path.join(base, "seed_datasets/local/psfuzz_steal_system.prompt"), encoding="utf-8") as f:
        d = yaml.safe_load(f)
    for s in d.get("seeds", []):
        for part in re.split(r"\|\s*\n?\s*(?=\d+\.)", s["value"]):
            part = re.sub(r"^\s*\d+\.\s*", "", part).strip().rstrip("|").strip()
            if len(part) >= 20:
                extra.append({"text": part, "y": 1, "lang": "zh" if is_cjk(part) else "en",
                              "src": "pyrit-extraction"})

    garak = []
    for p in sorted(glob.glob(os.path.join(base, "seed_datasets/local/garak/*"))):
        with open(p, encoding="utf-8", errors="replace") as f:
            garak.append(f.read())
    return extra, wild_texts + garak


def decontaminate(extra, dev, forbidden):
    """Drops extra rows near-duplicating a dev row or a hold-out source text."""
    refs = [shingles(t) for t in forbidden] + [shingles(r["text"]) for r in dev]
    # Index by shingle for speed.
    index = {}
    for i, s in enumerate(refs):
        for g in s:
            index.setdefault(g, []).append(i)
    kept, seen = [], []
    for r in extra:
        s = shingles(r["text"])
        counts = {}
        for g in s:
            for i in index.get(g, ()):
                counts[i] = counts.get(i, 0) + 1
        near = any(c / (len(s) + len(refs[i]) - c) >= 0.5 for i, c in counts.items())
        if near or any(jaccard(s, t) >= 0.5 for t in seen):
            continue
        seen.append(s)
        kept.append(r)
    return kept


def clusters(rows):
    """Single-linkage clusters at 5-gram Jaccard >= 0.5 (for grouped folds)."""
    sh = [shingles(r["text"]) for r in rows]
    parent = list(range(len(rows)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    index = {}
    for i, s in enumerate(sh):
        counts = {}
        for g in s:
            for j in index.get(g, ()):
                counts[j] = counts.get(j, 0) + 1
        for j, c in counts.items():
            if c / (len(s) + len(sh[j]) - c) >= 0.5:
                parent[find(i)] = find(j)
        for g in s:
            index.setdefault(g, []).append(i)
    return [find(i) for i in range(len(rows))]


# ── features ────────────────────────────────────────────────────────────────

def featurize(rows, bits, fams):
    inp = "".join(json.dumps({"text": r["text"]}, ensure_ascii=False) + "\n" for r in rows)
    cmd = ["cargo", "run", "-q", "-p", "guard", "--example", "featurize", "--", str(bits), fams]
    out = subprocess.run(cmd, input=inp.encode(), stdout=subprocess.PIPE, check=True, cwd=REPO).stdout
    lines = out.decode().split("\n")[: len(rows)]
    assert len(lines) == len(rows), "featurize output does not match the input"
    for r, line in zip(rows, lines):
        rule, feats = line.split("\t")
        r["rule"] = float(rule)
        idx, val = [], []
        total = 0
        for kv in feats.split():
            k, v = kv.split(":")
            idx.append(int(k))
            val.append(int(v))
            total += int(v)
        norm = 1.0 / math.sqrt(total) if total else 0.0
        r["x"] = (idx, [v * norm for v in val])


# ── model ───────────────────────────────────────────────────────────────────

def sigmoid(z):
    if z < -30:
        return 0.0
    if z > 30:
        return 1.0
    return 1.0 / (1.0 + math.exp(-z))


def train(rows, dim, epochs, l2, lr, seed):
    """Logistic regression, AdaGrad SGD with per-row weights and lazy L2."""
    w = [0.0] * dim
    g2 = [1e-8] * dim
    b, gb = 0.0, 1e-8
    order = list(range(len(rows)))
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            r = rows[i]
            idx, val = r["x"]
            z = b
            for k, v in zip(idx, val):
                z += w[k] * v
            g = (sigmoid(z) - r["y"]) * r["wt"]
            for k, v in zip(idx, val):
                gk = g * v + l2 * w[k]
                g2[k] += gk * gk
                w[k] -= lr * gk / math.sqrt(g2[k])
            gb += g * g
            b -= lr * g / math.sqrt(gb)
    return w, b


def predict(w, b, r):
    idx, val = r["x"]
    z = b
    for k, v in zip(idx, val):
        z += w[k] * v
    return sigmoid(z)


def set_weights(rows):
    """Balances labels within each language and source; extra rows count half."""
    groups = {}
    for r in rows:
        groups.setdefault((r["src"], r["lang"], r["y"]), []).append(r)
    for (src, _lang, _y), rs in groups.items():
        for r in rs:
            r["wt"] = (1.0 if src == "dev" else 0.5) * 150.0 / max(len(rs), 150)


def metrics(rows, flag):
    out = {}
    for name, sel in [("all", lambda r: True), ("en", lambda r: r["lang"] == "en"),
                      ("zh", lambda r: r["lang"] == "zh")]:
        rs = [r for r in rows if sel(r)]
        tp = sum(1 for r in rs if r["y"] and flag(r))
        fn = sum(1 for r in rs if r["y"] and not flag(r))
        fp = sum(1 for r in rs if not r["y"] and flag(r))
        tn = sum(1 for r in rs if not r["y"] and not flag(r))
        out[name] = {"recall": tp / max(tp + fn, 1), "fpr": fp / max(fp + tn, 1),
                     "tp": tp, "fn": fn, "fp": fp, "tn": tn}
    return out


def fmt(m):
    return "  ".join(f"{k}: recall {v['recall']:.3f} FPR {v['fpr']:.3f} (fn {v['fn']}, fp {v['fp']})"
                     for k, v in m.items())


def choose_threshold(rows, key, min_recall, max_fpr):
    """The threshold with the largest margin to the targets: it maximises, over
    the languages, the smallest of (recall - min_recall) and (max_fpr - FPR)
    of rules OR scorer; on a tie, the higher threshold."""
    best, best_margin = 1.0, -2.0
    for t in sorted({round(r[key], 4) for r in rows} | {1.0}, reverse=True):
        m = metrics(rows, lambda r: r["rule"] >= 0.5 or r[key] >= t)
        margin = min(min(v["recall"] - min_recall, max_fpr - v["fpr"])
                     for k, v in m.items() if k != "all")
        if margin > best_margin + 1e-9:
            best, best_margin = t, margin
    return best


def folds_for(dev, k, seed):
    cl = clusters(dev)
    by_cluster = {}
    for i, c in enumerate(cl):
        by_cluster.setdefault(c, []).append(i)
    # Stratify clusters by (lang, label) of their first row, then deal round-robin.
    strata = {}
    for c, members in by_cluster.items():
        r = dev[members[0]]
        strata.setdefault((r["lang"], r["y"]), []).append(members)
    rng = random.Random(seed)
    fold = [0] * len(dev)
    for key in sorted(strata):
        groups = strata[key]
        rng.shuffle(groups)
        groups.sort(key=len, reverse=True)
        sizes = [0] * k
        for g in groups:
            f = sizes.index(min(sizes))
            sizes[f] += len(g)
            for i in g:
                fold[i] = f
    return fold


def write_weights(path, bits, w, b, threshold, info):
    m = max(abs(x) for x in w) or 1.0
    scale = m / 127.0
    q = [max(-127, min(127, int(round(x / scale)))) for x in w]
    lines = [
        "//! Generated by `tools/train_scorer.py`: do not edit.",
        "//!",
    ]
    lines += [f"//! {line}" if line else "//!" for line in info]
    lines += [
        "",
        f"pub const TABLE_BITS: u32 = {bits};",
        f"pub const BIAS: f32 = {b:.6f};",
        f"pub const SCALE: f32 = {scale:.9f};",
        f"pub const THRESHOLD: f32 = {threshold:.4f};",
        "#[rustfmt::skip]",
        "pub static WEIGHTS: [i8; 1 << TABLE_BITS] = [",
    ]
    for i in range(0, len(q), 32):
        lines.append(" " + ",".join(str(x) for x in q[i:i + 32]) + ",")
    lines.append("];")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return q, scale


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", default=os.path.join(REPO, "..", "shared", "data", "guard-dev.jsonl"))
    ap.add_argument("--pyrit", help="unpacked pyrit==1.1.0 wheel (extra training data)")
    ap.add_argument("--bits", type=int, default=16)
    ap.add_argument("--families", default="123456")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--l2", type=float, default=1e-4)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--min-recall", type=float, default=0.95, help="recall target (threshold choice)")
    ap.add_argument("--max-fpr", type=float, default=0.03, help="FPR target (threshold choice)")
    ap.add_argument("--out", default=os.path.join(ROOT, "src", "scorer_weights.rs"))
    ap.add_argument("--no-synthetic", action="store_true", help="leave out tools/synth_benign.py rows")
    ap.add_argument("--no-tech", action="store_true", help="leave out tools/tech_benign.py rows")
    ap.add_argument("--cv-only", action="store_true", help="report cross-validation, write nothing")
    a = ap.parse_args()

    dev = load_dev(a.dev)
    extra = []
    if a.pyrit:
        extra, forbidden = load_pyrit(a.pyrit)
        n0 = len(extra)
        extra = decontaminate(extra, dev, forbidden)
        print(f"extra rows: {len(extra)} of {n0} after decontamination "
              f"({sum(r['y'] for r in extra)} injection, {sum(1 - r['y'] for r in extra)} benign)")
    if not a.no_synthetic:
        synth = synth_benign.generate(SEED)
        print(f"synthetic benign rows: {len(synth)}")
        extra += synth
    if not a.no_tech:
        tech = tech_benign.generate(REPO, SEED)
        print(f"technical benign rows (crates of Cargo.lock): {len(tech)}")
        extra += tech
    sanity_path = os.path.join(ROOT, "tools", "sanity_benign.txt")
    with open(sanity_path, encoding="utf-8") as f:
        sanity = [{"text": t.strip(), "y": 0, "lang": "zh" if is_cjk(t) else "en", "src": "sanity"}
                  for t in f if t.strip() and not t.startswith("#")]
    # The repository's own docs, paragraph by paragraph (guards.md quotes attacks on purpose).
    docs = []
    for path in sorted(glob.glob(os.path.join(REPO, "docs", "*.md"))) + [os.path.join(REPO, "README.md")]:
        if os.path.basename(path) in ("guards.md", "security.md") or not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            for para in re.split(r"\n\s*\n", f.read()):
                if len(para.strip()) >= 20:
                    docs.append({"text": para.strip(), "y": 0, "lang": "en", "src": "docs"})
    rows = dev + extra
    featurize(rows + sanity + docs, a.bits, a.families)
    dim = 1 << a.bits

    # Cross-validation.
    fold = folds_for(dev, a.folds, SEED)
    for f in range(a.folds):
        tr = [r for i, r in enumerate(dev) if fold[i] != f] + extra
        set_weights(tr)
        w, b = train(tr, dim, a.epochs, a.l2, a.lr, SEED + f)
        for i, r in enumerate(dev):
            if fold[i] == f:
                r["cv"] = predict(w, b, r)
    t_cv = choose_threshold(dev, "cv", a.min_recall, a.max_fpr)
    rules_only = metrics(dev, lambda r: r["rule"] >= 0.5)
    cv_model = metrics(dev, lambda r: r["cv"] >= t_cv)
    cv_comb = metrics(dev, lambda r: r["rule"] >= 0.5 or r["cv"] >= t_cv)
    print(f"rules only (dev):            {fmt(rules_only)}")
    print(f"CV scorer only @ {t_cv:.3f}:     {fmt(cv_model)}")
    print(f"CV rules OR scorer @ {t_cv:.3f}: {fmt(cv_comb)}")
    if os.environ.get("TRAIN_VERBOSE"):
        for r in dev:
            hit = r["rule"] >= 0.5 or r["cv"] >= t_cv
            if hit != bool(r["y"]):
                print(f"  {'MISS' if r['y'] else 'FP  '} cv {r['cv']:.3f} rule {r['rule']:.2f} "
                      f"{r['lang']} {r['text'][:110]!r}")
    if a.cv_only:
        return

    set_weights(rows)
    w, b = train(rows, dim, a.epochs, a.l2, a.lr, SEED)
    info = [
        f"Trained on {len(dev)} dev rows + {len(extra)} extra rows; {a.bits}-bit table, "
        f"families {a.families}, {a.epochs} epochs, l2 {a.l2}, lr {a.lr}.",
        f"{a.folds}-fold CV (grouped, stratified), threshold {t_cv:.4f} (largest margin to "
        f"recall >= {a.min_recall}, FPR <= {a.max_fpr}):",
        f"  rules OR scorer: {fmt(cv_comb)}",
    ]
    q, scale = write_weights(a.out, a.bits, w, b, t_cv, info)
    # Train-set numbers with the quantised weights (optimistic, for reference only).
    for r in rows:
        idx, val = r["x"]
        r["final"] = sigmoid(b + scale * sum(q[k] * v for k, v in zip(idx, val)))
    for r in sanity + docs:
        idx, val = r["x"]
        r["final"] = sigmoid(b + scale * sum(q[k] * v for k, v in zip(idx, val)))
    flagged = [r for r in sanity if r["rule"] >= 0.5 or r["final"] >= t_cv]
    print(f"hand-written benign sanity set (not trained on): {len(flagged)}/{len(sanity)} flagged")
    for r in flagged:
        print(f"  FP model {r['final']:.2f} rule {r['rule']:.2f} {r['text'][:100]!r}")
    flagged = [r for r in docs if r["rule"] >= 0.5 or r["final"] >= t_cv]
    print(f"paragraphs of the repository's docs (not trained on): {len(flagged)}/{len(docs)} flagged")
    for r in flagged[:10]:
        print(f"  FP model {r['final']:.2f} rule {r['rule']:.2f} {r['text'][:100]!r}")
    print(f"train set (optimistic) @ {t_cv:.3f}: "
          f"{fmt(metrics(dev, lambda r: r['rule'] >= 0.5 or r['final'] >= t_cv))}")
    print(f"wrote {os.path.relpath(a.out, REPO)}")


if __name__ == "__main__":
    main()
