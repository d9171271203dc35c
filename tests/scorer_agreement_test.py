#!/usr/bin/env python3
"""Our evaluator against the reference scorers of ../shared/tools.

Runs `recsys-trainer evaluate --train --test` with --predictions-out and
--recommendations-out, scores the files with score_ratings.py and
score_topn.py, and checks that every metric agrees to 4 decimals. Runs on
generated data (always) and on MovieLens-100K u1 (when ../shared/data has
it). Exit code 77 = skipped (CTest SKIP_RETURN_CODE).

usage: scorer_agreement_test.py TRAINER SOURCE_DIR
"""
import os
import random
import re
import subprocess
import sys
import tempfile

SKIP = 77


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("command failed (%d): %s\n%s%s" % (p.returncode, " ".join(cmd), p.stdout, p.stderr))
    return p.stdout


def ours(trainer, train, test, tmp, model, extra=()):
    pred = os.path.join(tmp, "pred.tsv")
    recs = os.path.join(tmp, "recs.tsv")
    out = run([trainer, "evaluate", "--train=" + train, "--test=" + test,
               "--models=" + model, "--predictions-out=" + pred,
               "--recommendations-out=" + recs, "--threads=2"] + list(extra))
    line = [l for l in out.splitlines() if l.startswith(model + " ")][-1].split()
    names = ["RMSE", "MAE", "P@10", "R@10", "nDCG@10", "MAP@10"]
    return dict(zip(names, map(float, line[1:7]))), int(line[7]), pred, recs


def check(label, mine, users, pred, recs, tools, train, test, rating_args, topn_args):
    r = run([sys.executable, os.path.join(tools, "score_ratings.py"), "--test", test,
             "--pred", pred] + rating_args)
    t = run([sys.executable, os.path.join(tools, "score_topn.py"), "--train", train,
             "--test", test, "--recs", recs] + topn_args)
    ref = {}
    m = re.search(r"RMSE (\S+) MAE (\S+)", r)
    ref["RMSE"], ref["MAE"] = float(m.group(1)), float(m.group(2))
    m = re.search(r"users (\d+) P@10 (\S+) R@10 (\S+) nDCG@10 (\S+) MAP@10 (\S+)", t)
    ref_users = int(m.group(1))
    for name, g in zip(["P@10", "R@10", "nDCG@10", "MAP@10"], range(2, 6)):
        ref[name] = float(m.group(g))
    bad = []
    for name, value in ref.items():
        # Ours prints 4 decimals: agreement to 4 decimals means within half
        # a unit of the last printed digit.
        if abs(mine[name] - value) > 5e-5 + 1e-9:
            bad.append("%s ours %.4f reference %.6f" % (name, mine[name], value))
    if users != ref_users:
        bad.append("users ours %d reference %d" % (users, ref_users))
    print("%s: ours %s | reference %s" % (label, mine, ref))
    if bad:
        sys.exit("%s: evaluator disagrees with the reference scorers: %s" % (label, "; ".join(bad)))


def generated(tmp):
    rnd = random.Random(5)
    users, items = 120, 80
    bu = [rnd.gauss(0, 0.4) for _ in range(users)]
    bi = [rnd.gauss(0, 0.6) for _ in range(items)]
    pu = [[rnd.gauss(0, 0.6) for _ in range(3)] for _ in range(users)]
    qi = [[rnd.gauss(0, 0.6) for _ in range(3)] for _ in range(items)]
    lines = []
    for u in range(users):
        for i in range(items):
            if rnd.random() < 0.2:
                r = 3.3 + bu[u] + bi[i] + sum(a * b for a, b in zip(pu[u], qi[i])) + rnd.gauss(0, 0.3)
                r = min(4.0, max(0.5, round(r * 2) / 2))  # half stars on 0.5..4.0
                lines.append("user%d,item%d,%.1f,%d" % (u, i, r, 1000 + len(lines)))
    rnd.shuffle(lines)
    cut = int(len(lines) * 0.8)
    train, test = os.path.join(tmp, "gen.train"), os.path.join(tmp, "gen.test")
    with open(train, "w") as f:
        f.write("\n".join(lines[:cut]) + "\n")
    with open(test, "w") as f:
        f.write("\n".join(lines[cut:]) + "\n")
    return train, test


def main():
    trainer, source = sys.argv[1], sys.argv[2]
    tools = os.environ.get("RECSYS_TOOLS_DIR", os.path.join(source, "..", "shared", "tools"))
    if not os.path.exists(os.path.join(tools, "score_ratings.py")):
        print("SKIP: reference scorers not found at %s (set RECSYS_TOOLS_DIR)" % tools)
        return SKIP
    with tempfile.TemporaryDirectory() as tmp:
        train, test = generated(tmp)
        # The scorers read whitespace-separated files; give them a tab copy.
        for path in (train, test):
            with open(path) as f:
                text = f.read().replace(",", "\t")
            with open(path + ".tsv", "w") as f:
                f.write(text)
        for model in ("sgd", "baseline", "bayes", "ials", "hybrid"):
            mine, users, pred, recs = ours(trainer, train, test, tmp, model,
                                           ["--scale=0.5,4"])
            check("generated/" + model, mine, users, pred, recs, tools, train + ".tsv",
                  test + ".tsv", ["--clip", "0.5", "4"],
                  ["--items-from-data", "--rel-min", "3.125"])
        data = os.environ.get("RECSYS_TEST_DATA_DIR", os.path.join(source, "..", "shared", "data"))
        ml = os.path.join(data, "ml-100k")
        if not os.path.exists(os.path.join(ml, "u1.base")):
            print("SKIP (ML-100K part): MovieLens copy not found at %s" % ml)
            return 0
        for model in ("sgd", "popularity", "bayes", "ials", "hybrid"):
            u1b, u1t = os.path.join(ml, "u1.base"), os.path.join(ml, "u1.test")
            mine, users, pred, recs = ours(trainer, u1b, u1t, tmp, model)
            check("ml-100k u1/" + model, mine, users, pred, recs, tools, u1b, u1t, [], [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
