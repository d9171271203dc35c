#!/usr/bin/env bash
# The development suite: every quality change is judged on it
# (../shared/PROTOCOLS.md, "Other data (the development suite)").
#
#   bash scripts/dev_suite.sh                         # every set, default kinds
#   bash scripts/dev_suite.sh --sets=ml100k,mls       # a subset
#   bash scripts/dev_suite.sh --models=popularity,ials,baseline --no-build
#
# Builds recsys-trainer (Release), then for each set:
#   ml100k          recsys-trainer evaluate --data=DATA/ml-100k (protocols R
#                   and T over u1..u5); checks RMSE <= 0.900, nDCG@10 >= 0.420.
#   mls             ml-latest-small (DATA/ml-latest-small/ratings.csv), split
#                   80/20 by ../shared/tools/split.py (seed 2026).
#   lastfm          lastfm-2k play counts (DATA/lastfm-2k/user_artists.tsv),
#                   split likewise; implicit feedback: trained with
#                   --feedback=implicit, every test pair relevant (rel-min
#                   1), PureSVD's reference on the binarised matrix, kinds
#                   that predict ratings (baseline) and RMSE left out.
#   synth-longtail  recsys-trainer generate, 120k items, 1M ratings, Zipf tail.
#   synth-sparse    91k items, 226k ratings, 8k users (>= 20 ratings each).
#   synth-ml1m      3,000 users x 3,700 items, 600k ratings (ML-1M density).
# On every split set the reference rankers ref_popularity.py and
# ref_puresvd.py --k 20 give the bar, 1.05 x the better nDCG@10; the
# candidate kind (auto) must reach it, and its RMSE must not exceed the
# baseline kind's. Its recommendations are also rescored by score_topn.py
# to show that our evaluator and the reference scorer agree.
#
# DATA is $RECSYS_DATA_DIR, else ../shared/data beside the repository; a set
# whose data is missing is skipped with a message. Work files (generated
# data, splits, logs, recommendations) live in build/suite/ and are reused
# on the next run: generated data, splits and reference figures are cached
# (--fresh recomputes them); the models are always retrained. The summary
# table is printed and written to build/suite/results.md.
#
# Options:
#   --sets=LIST       comma-separated sets (default: all of the above)
#   --models=LIST     kinds compared (default popularity,puresvd,auto,baseline)
#   --candidate=KIND  the kind held to the bar (default auto when listed,
#                     else the last listed kind that is not popularity or
#                     baseline)
#   --threads=N       training threads (default 2)
#   --no-build        use the existing build/release/trainer/recsys-trainer
#                     (or $RECSYS_TRAINER) instead of building it
#   --fresh           regenerate data, splits and reference figures
# Exit status: 0 every check passed; 1 a step failed (message on stderr);
# 2 bad usage; 3 every step ran but a quality check failed.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ALL_SETS=(ml100k mls lastfm synth-longtail synth-sparse synth-ml1m)
SETS="$(IFS=,; echo "${ALL_SETS[*]}")"
MODELS="popularity,puresvd,auto,baseline"
CANDIDATE=""
THREADS=2
BUILD=1
FRESH=0
SPLIT_SEED=2026
REL_MIN=4
# What the set being run needs (run_split_set sets them): its relevance
# threshold, split.py's flags, recsys-trainer's extra flags, PureSVD
# reference flags, and whether it is implicit feedback.
SET_REL_MIN=$REL_MIN
SET_SPLIT_ARGS=(--sep , --skip-header)
SET_TRAINER_ARGS=()
SET_SVD_ARGS=(--k 20)
SET_IMPLICIT=0
# The synthetic sets: exact recsys-trainer generate flags (1..5 whole stars,
# fixed seed, so every run sees the same data).
declare -A SYNTH_ARGS=(
  # Long tail: item popularity is the generator's Zipf-Mandelbrot default
  # (exponent 1.1, offset 50): 95k of the 120k items are rated at all,
  # most of them a handful of times; the top item by 3k of the 10k users.
  [synth-longtail]="--users=10000 --items=120000 --ratings=1000000 --rank=10 --noise=0.5 --scale=1,5 --seed=2026"
  # A very sparse catalogue: 91k items (44k of them rated), 226k ratings,
  # 8k users (each >= 20 ratings, the generator's floor; 28 on average).
  [synth-sparse]="--users=8000 --items=91000 --ratings=226000 --rank=10 --noise=0.5 --scale=1,5 --seed=2026"
  # ML-1M-like density (5.4%; ML-1M has 4.5%) with 3k users.
  [synth-ml1m]="--users=3000 --items=3700 --ratings=600000 --rank=10 --noise=0.5 --scale=1,5 --seed=2026"
)
# ML-100K thresholds for the candidate (protocol R RMSE, protocol T nDCG@10).
ML100K_RMSE_MAX=0.900
ML100K_NDCG_MIN=0.420
# Our nDCG@10 is printed to 4 decimals; score_topn.py's to 6.
AGREE_TOL=0.0005

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "dev_suite: error: $*" >&2; exit 1; }
note() { echo "dev_suite: $*" >&2; }

for arg in "$@"; do
  case "$arg" in
    --sets=*) SETS="${arg#*=}" ;;
    --models=*) MODELS="${arg#*=}" ;;
    --candidate=*) CANDIDATE="${arg#*=}" ;;
    --threads=*) THREADS="${arg#*=}" ;;
    --no-build) BUILD=0 ;;
    --fresh) FRESH=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "dev_suite: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

IFS=, read -r -a SET_LIST <<<"$SETS"
IFS=, read -r -a MODEL_LIST <<<"$MODELS"
[ ${#SET_LIST[@]} -gt 0 ] || { echo "dev_suite: --sets is empty" >&2; exit 2; }
[ ${#MODEL_LIST[@]} -gt 0 ] || { echo "dev_suite: --models is empty" >&2; exit 2; }
for s in "${SET_LIST[@]}"; do
  case " ${ALL_SETS[*]} " in
    *" $s "*) ;;
    *) echo "dev_suite: unknown set '$s' (known: ${ALL_SETS[*]})" >&2; exit 2 ;;
  esac
done
[[ "$THREADS" =~ ^[0-9]+$ ]] || { echo "dev_suite: --threads must be a number" >&2; exit 2; }
has_model() { case ",$MODELS," in *",$1,"*) return 0 ;; esac; return 1; }
if [ -z "$CANDIDATE" ]; then
  if has_model auto; then
    CANDIDATE=auto
  else
    for m in "${MODEL_LIST[@]}"; do
      case "$m" in popularity|baseline) ;; *) CANDIDATE="$m" ;; esac
    done
    [ -n "$CANDIDATE" ] || CANDIDATE="${MODEL_LIST[-1]}"
    note "'auto' is not in --models: holding '$CANDIDATE' to the bar instead"
  fi
fi
has_model "$CANDIDATE" || { echo "dev_suite: --candidate=$CANDIDATE is not in --models=$MODELS" >&2; exit 2; }
# The kinds other than the candidate: one evaluate run; the candidate runs
# alone (it writes recommendations and is measured with /usr/bin/time).
OTHERS=()
for m in "${MODEL_LIST[@]}"; do [ "$m" = "$CANDIDATE" ] || OTHERS+=("$m"); done
OTHERS_CSV="$(IFS=,; echo "${OTHERS[*]}")"

# --- packages, build, tools -------------------------------------------------

# The reference rankers need Debian's numpy and scipy; peak memory comes from
# GNU time. Installed the way common.sh installs the build's packages.
SUITE_PACKAGES=(python3-numpy python3-scipy time)
suite_ensure_packages() {
  # shellcheck disable=SC2034  # read by recsys_ensure_packages
  local RECSYS_PACKAGES=("${SUITE_PACKAGES[@]}")
  recsys_ensure_packages
}
recsys_ensure_packages
suite_ensure_packages

TRAINER="${RECSYS_TRAINER:-$RECSYS_BUILD/trainer/recsys-trainer}"
if [ "$BUILD" -eq 1 ]; then
  note "building recsys-trainer"
  recsys_build --target recsys-trainer || die "building recsys-trainer failed"
fi
[ -x "$TRAINER" ] || die "$TRAINER does not exist (run without --no-build)"

# Debian's python3-numpy/scipy belong to /usr/bin/python3, which may not be
# the python3 first on PATH (pyenv, venvs).
PY="${RECSYS_PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY="$(command -v python3)"; fi
fi
"$PY" -c 'import numpy, scipy' 2>/dev/null ||
  die "$PY cannot import numpy and scipy (set RECSYS_PYTHON to a python3 that can)"
TIME=/usr/bin/time
[ -x "$TIME" ] || die "$TIME (Debian package 'time') is missing"

TOOLS="${RECSYS_TOOLS_DIR:-$RECSYS_ROOT/../shared/tools}"
DATA="${RECSYS_DATA_DIR:-$RECSYS_ROOT/../shared/data}"
SUITE="$RECSYS_ROOT/build/suite"
mkdir -p "$SUITE"
if [ -d "$DATA" ]; then DATA="$(cd "$DATA" && pwd)"; fi
if [ -d "$TOOLS" ]; then TOOLS="$(cd "$TOOLS" && pwd)"; fi
for t in split.py ref_popularity.py ref_puresvd.py score_topn.py; do
  [ -f "$TOOLS/$t" ] || die "$TOOLS/$t is missing (set RECSYS_TOOLS_DIR)"
done

# A typo in --models fails here, not after an hour of data preparation.
if check="$("$TRAINER" evaluate --models="$MODELS" --train="$SUITE/.none" \
      --test="$SUITE/.none" 2>&1)"; then :; fi
if grep -q "unknown model kind" <<<"$check"; then
  die "recsys-trainer does not know a kind in --models=$MODELS: $(grep -m1 "unknown model kind" <<<"$check")"
fi

# --- helpers ----------------------------------------------------------------

TIMINGS=()   # "set|step|seconds"
STEP_SECONDS=0
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# step SET LABEL LOG CMD...: runs CMD with stdout and stderr in LOG, records
# its wall time; on failure prints the command and the end of LOG and exits.
step() {
  local set="$1" label="$2" log="$3"
  shift 3
  note "[$(date +%T)] $set: $label"
  local t0
  t0="$(now)"
  if ! "$@" >"$log" 2>&1; then
    echo "dev_suite: error: $set: $label failed" >&2
    echo "  command: $*" >&2
    echo "  last lines of $log:" >&2
    tail -n 20 "$log" | sed 's/^/    /' >&2
    exit 1
  fi
  STEP_SECONDS="$(elapsed "$t0")"
  TIMINGS+=("$set|$label|$STEP_SECONDS")
}
# cached SET LABEL SECONDS_FILE: a step whose output is reused; the time it
# took when it ran is kept in SECONDS_FILE.
cached() {
  local took="?"
  [ -s "$3" ] && took="$(cat "$3")"
  TIMINGS+=("$1|$2|cached (took $took)")
  note "$1: $2: cached"
}

# The value after NAME in a score_topn.py line ("users n P@10 x ... nDCG@10 z").
topn_field() { awk -v k="$2" '{ for (i = 1; i < NF; i++) if ($i == k) { print $(i + 1); exit } }' "$1"; }
# table_field LOG KIND POS F: field F of model KIND's row in an evaluate
# table: the row labelled KIND, else (should a kind be labelled otherwise,
# e.g. by what it resolved to) the POS-th row of numbers after the header,
# with a note. --train/--test tables have 9 fields (model RMSE MAE P@10
# R@10 nDCG@10 MAP@10 users fit-s); the ML-100K one 20 (cells "mean ± sd").
table_field() {
  awk -v k="$2" -v pos="$3" -v f="$4" -v file="$1" '
    function num(x) { return x ~ /^-?([0-9]+\.?[0-9]*|nan|inf)$/ }
    /^model / { hdr = 1; n = 0; next }
    hdr && ((NF == 9 && num($2) && num($9)) || (NF == 20 && $3 == "±" && num($2) && num($20))) {
      n++
      if ($1 == k && byname == "") byname = $f
      if (n == pos) { bypos = $f; label = $1 }
    }
    END {
      if (byname != "") print byname
      else if (bypos != "") {
        print bypos
        printf "dev_suite: note: %s: no row labelled \"%s\"; using row %d (\"%s\")\n", file, k, pos, label > "/dev/stderr"
      }
    }' "$1"
}
# "ratings users items" of FILE from an evaluate load summary line.
load_counts() {
  awk -v p="$2: " 'index($0, p) == 1 {
    split(substr($0, length(p) + 1), a, /[ ,]+/); print a[1], a[3], a[5]; exit }' "$1"
}
peak_mb() { awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$1"; }
fmt4() { if [ -n "$1" ]; then awk -v x="$1" 'BEGIN { printf "%.4f", x }'; else echo "?"; fi; }
join_why() { local out="$1"; shift; for w in "$@"; do out+="; $w"; done; echo "$out"; }
num_le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }

ROWS=()      # markdown rows of the summary table
CHOSEN=()    # "set|what the candidate's selection chose" (when it says)
DETAILS=()   # raw evaluator tables, for results.md
FAILED=0
SKIPPED=()

# chosen SET LOG: the evaluator's "selected for KIND[ on uN]: ..." lines of
# the candidate (one per fold on ML-100K).
chosen() {
  local line re="^selected for $CANDIDATE( on (u[0-9]+))?: (.*)$"
  while IFS= read -r line; do
    [[ "$line" =~ $re ]] || continue
    CHOSEN+=("$1${BASH_REMATCH[2]:+ ${BASH_REMATCH[2]}}|${BASH_REMATCH[3]}")
  done <"$2"
}

# --- ML-100K: protocols R and T on u1..u5 -----------------------------------

run_ml100k() {
  local dir="$DATA/ml-100k" work="$SUITE/ml100k"
  if [ ! -f "$dir/u1.base" ]; then
    note "ml100k: SKIPPED, no $dir/u1.base (set RECSYS_DATA_DIR)"
    ROWS+=("| ml100k | skipped: no data in $dir |")
    SKIPPED+=(ml100k)
    return
  fi
  mkdir -p "$work"
  step ml100k "evaluate u1..u5 ($MODELS)" "$work/eval.log" \
    "$TIME" -v -o "$work/eval.time" \
    "$TRAINER" evaluate --data="$dir" --models="$MODELS" --threads="$THREADS"
  DETAILS+=("ml100k" "$work/eval.log")
  chosen ml100k "$work/eval.log"
  local users items n
  users="$(awk '{ print $1 }' "$dir/u1.base" | sort -u | wc -l)"
  items="$(awk -F'|' 'END { print NR }' "$dir/u.item")"
  n="$(wc -l <"$dir/u1.base")"
  local row="| ml100k (u1..u5 means) | $users | $items | $n | — | — | RMSE ≤ $ML100K_RMSE_MAX, nDCG ≥ $ML100K_NDCG_MIN"
  local m v i=0 cpos=0 bpos=0
  for m in "${MODEL_LIST[@]}"; do
    i=$((i + 1))
    [ "$m" = "$CANDIDATE" ] && cpos=$i
    [ "$m" = baseline ] && bpos=$i
    v="$(table_field "$work/eval.log" "$m" "$i" 14)"
    [ -n "$v" ] || die "ml100k: no '$m' row in $work/eval.log"
    row+=" | $(fmt4 "$v")"
  done
  local c_ndcg c_p c_rmse b_rmse c_fit
  c_ndcg="$(table_field "$work/eval.log" "$CANDIDATE" "$cpos" 14)"
  c_p="$(table_field "$work/eval.log" "$CANDIDATE" "$cpos" 8)"
  c_rmse="$(table_field "$work/eval.log" "$CANDIDATE" "$cpos" 2)"
  c_fit="$(table_field "$work/eval.log" "$CANDIDATE" "$cpos" 20)"
  row+=" | — | $(fmt4 "$c_p") | $(fmt4 "$c_rmse")"
  if has_model baseline && [ "$CANDIDATE" != baseline ]; then
    b_rmse="$(table_field "$work/eval.log" baseline "$bpos" 2)"
    row+=" | $(fmt4 "$b_rmse")"
  fi
  row+=" | $c_fit/fold | $(peak_mb "$work/eval.time") (whole run)"
  local why=()
  num_le "$c_rmse" "$ML100K_RMSE_MAX" || why+=("RMSE $c_rmse > $ML100K_RMSE_MAX")
  num_le "$ML100K_NDCG_MIN" "$c_ndcg" || why+=("nDCG $c_ndcg < $ML100K_NDCG_MIN")
  if [ ${#why[@]} -eq 0 ]; then
    row+=" | PASS |"
  else
    FAILED=1
    row+=" | FAIL: $(join_why "${why[@]}") |"
  fi
  ROWS+=("$row")
}

# --- split sets -------------------------------------------------------------

# prepare_split SET SRC WORK: the 80/20 split of SRC into WORK/{train,test}.tsv
# (cached: WORK/split.log is written last).
prepare_split() {
  local set="$1" src="$2" work="$3"
  if [ -f "$work/split.log" ] && [ -f "$work/train.tsv" ] && [ -f "$work/test.tsv" ] &&
     [ ! "$src" -nt "$work/split.log" ]; then
    cached "$set" "split.py (seed $SPLIT_SEED)" "$work/split.seconds"
    return
  fi
  rm -f "$work/split.log" "$work"/ref_*.txt
  step "$set" "split.py (seed $SPLIT_SEED)" "$work/split.log.tmp" \
    "$PY" "$TOOLS/split.py" --in "$src" --out "$work" "${SET_SPLIT_ARGS[@]}" --seed "$SPLIT_SEED"
  echo "$STEP_SECONDS" >"$work/split.seconds"
  mv "$work/split.log.tmp" "$work/split.log"
}

# reference SET WORK NAME SCRIPT ARGS...: nDCG line of a reference ranker
# (cached in WORK/ref_NAME.txt, newer than the split).
reference() {
  local set="$1" work="$2" name="$3" script="$4"
  shift 4
  local out="$work/ref_$name.txt"
  if [ -s "$out" ] && [ "$out" -nt "$work/split.log" ]; then
    cached "$set" "$script${*:+ $*}" "$work/ref_$name.seconds"
    return
  fi
  step "$set" "$script${*:+ $*}" "$out.tmp" \
    "$PY" "$TOOLS/$script" --train "$work/train.tsv" --test "$work/test.tsv" \
    --out "$work/ref_$name.recs.tsv" --rel-min "$SET_REL_MIN" "$@"
  grep -q "nDCG@10" "$out.tmp" || die "$set: no nDCG@10 in $out.tmp"
  echo "$STEP_SECONDS" >"$work/ref_$name.seconds"
  mv "$out.tmp" "$out"
}

# implicit_kind KIND: whether KIND trains on implicit feedback.
implicit_kind() { case "$1" in auto|ials|puresvd|popularity) return 0 ;; esac; return 1; }

run_split_set() {
  local set="$1" work="$SUITE/$1" src
  if [ "$FRESH" -eq 1 ]; then rm -rf "$work"; fi
  mkdir -p "$work"
  SET_REL_MIN=$REL_MIN SET_SPLIT_ARGS=(--sep , --skip-header) SET_TRAINER_ARGS=()
  SET_SVD_ARGS=(--k 20) SET_IMPLICIT=0
  if [ "$set" = lastfm ]; then
    SET_REL_MIN=1 SET_SPLIT_ARGS=(--skip-header) SET_TRAINER_ARGS=(--feedback=implicit)
    SET_SVD_ARGS=(--k 20 --binary) SET_IMPLICIT=1
    src="$DATA/lastfm-2k/user_artists.tsv"
    if [ ! -f "$src" ]; then
      note "lastfm: SKIPPED, no $src (set RECSYS_DATA_DIR)"
      ROWS+=("| lastfm | skipped: no $src |")
      SKIPPED+=(lastfm)
      return
    fi
  elif [ "$set" = mls ]; then
    src="$DATA/ml-latest-small/ratings.csv"
    if [ ! -f "$src" ]; then
      note "mls: SKIPPED, no $src (set RECSYS_DATA_DIR)"
      ROWS+=("| mls | skipped: no $src |")
      SKIPPED+=(mls)
      return
    fi
  else
    src="$work/ratings.csv"
    if [ -f "$src" ]; then
      cached "$set" "generate ${SYNTH_ARGS[$set]}" "$work/generate.seconds"
    else
      # shellcheck disable=SC2086  # the flags are split on purpose
      step "$set" "generate ${SYNTH_ARGS[$set]}" "$work/generate.log" \
        "$TRAINER" generate ${SYNTH_ARGS[$set]} --out="$src"
      echo "$STEP_SECONDS" >"$work/generate.seconds"
    fi
  fi
  prepare_split "$set" "$src" "$work"
  reference "$set" "$work" popularity ref_popularity.py
  reference "$set" "$work" puresvd ref_puresvd.py "${SET_SVD_ARGS[@]}"

  local train="$work/train.tsv" test="$work/test.tsv"
  # (Kinds that predict ratings do not train on implicit feedback.)
  local others=() m
  for m in "${OTHERS[@]}"; do
    if [ "$SET_IMPLICIT" -eq 0 ] || implicit_kind "$m"; then others+=("$m"); fi
  done
  local others_csv
  others_csv="$(IFS=,; echo "${others[*]}")"
  if [ ${#others[@]} -gt 0 ]; then
    step "$set" "evaluate $others_csv" "$work/eval.log" \
      "$TRAINER" evaluate --train="$train" --test="$test" --models="$others_csv" \
      --relevant-min="$SET_REL_MIN" --threads="$THREADS" "${SET_TRAINER_ARGS[@]}"
    DETAILS+=("$set: $others_csv" "$work/eval.log")
  fi
  step "$set" "evaluate $CANDIDATE (recommendations, /usr/bin/time -v)" "$work/cand.log" \
    "$TIME" -v -o "$work/cand.time" \
    "$TRAINER" evaluate --train="$train" --test="$test" --models="$CANDIDATE" \
    --relevant-min="$SET_REL_MIN" --threads="$THREADS" "${SET_TRAINER_ARGS[@]}" \
    --recommendations-out="$work/cand.recs.tsv"
  DETAILS+=("$set: $CANDIDATE" "$work/cand.log")
  chosen "$set" "$work/cand.log"
  local scored=1
  note "[$(date +%T)] $set: score_topn.py on the $CANDIDATE recommendations"
  local t0
  t0="$(now)"
  if ! "$PY" "$TOOLS/score_topn.py" --train "$train" --test "$test" --items-from-data \
       --rel-min "$SET_REL_MIN" --recs "$work/cand.recs.tsv" >"$work/cand.score.txt" 2>&1; then
    scored=0
    note "$set: score_topn.py REJECTED the $CANDIDATE recommendations:"
    sed 's/^/    /' "$work/cand.score.txt" >&2
  fi
  TIMINGS+=("$set|score_topn.py on $CANDIDATE recs|$(elapsed "$t0")")

  local counts pop svd bar n users items
  counts="$(load_counts "$work/cand.log" "$train")"
  [ -n "$counts" ] || die "$set: no load summary for $train in $work/cand.log"
  read -r n users items <<<"$counts"
  pop="$(topn_field "$work/ref_popularity.txt" nDCG@10)"
  svd="$(topn_field "$work/ref_puresvd.txt" nDCG@10)"
  bar="$(awk -v a="$pop" -v b="$svd" 'BEGIN { printf "%.4f", 1.05 * (a > b ? a : b) }')"
  local row
  row="| $set | $users | $items | $n | $(fmt4 "$pop") | $(fmt4 "$svd") | $bar"
  local v i=0 bpos=0
  for m in "${MODEL_LIST[@]}"; do
    if [ "$m" = "$CANDIDATE" ]; then
      v="$(table_field "$work/cand.log" "$m" 1 6)"
    elif [ "$SET_IMPLICIT" -eq 1 ] && ! implicit_kind "$m"; then
      v="—"
    else
      i=$((i + 1))
      [ "$m" = baseline ] && bpos=$i
      v="$(table_field "$work/eval.log" "$m" "$i" 6)"
    fi
    [ -n "$v" ] || die "$set: no '$m' row in the evaluate output ($work)"
    row+=" | $v"
  done
  local c_ndcg c_p c_rmse c_fit b_rmse ref_ndcg
  c_ndcg="$(table_field "$work/cand.log" "$CANDIDATE" 1 6)"
  c_p="$(table_field "$work/cand.log" "$CANDIDATE" 1 4)"
  c_rmse="$(table_field "$work/cand.log" "$CANDIDATE" 1 2)"
  c_fit="$(table_field "$work/cand.log" "$CANDIDATE" 1 9)"
  local why=()
  if [ "$scored" -eq 1 ]; then
    ref_ndcg="$(topn_field "$work/cand.score.txt" nDCG@10)"
    row+=" | $(fmt4 "$ref_ndcg")"
    awk -v a="$ref_ndcg" -v b="$c_ndcg" -v t="$AGREE_TOL" 'BEGIN { d = a - b; exit !(d <= t && -d <= t) }' ||
      why+=("score_topn.py gives nDCG $ref_ndcg, ours $c_ndcg")
  else
    row+=" | rejected"
    why+=("score_topn.py rejected the recommendations (see $work/cand.score.txt)")
  fi
  [ "$SET_IMPLICIT" -eq 1 ] && c_rmse="— (implicit)"
  row+=" | $c_p | $c_rmse"
  num_le "$bar" "$c_ndcg" || why+=("nDCG $c_ndcg < bar $bar")
  if [ "$SET_IMPLICIT" -eq 1 ] && has_model baseline && [ "$CANDIDATE" != baseline ]; then
    row+=" | —"
  elif has_model baseline && [ "$CANDIDATE" != baseline ]; then
    b_rmse="$(table_field "$work/eval.log" baseline "$bpos" 2)"
    row+=" | $b_rmse"
    num_le "$c_rmse" "$b_rmse" || why+=("RMSE $c_rmse > baseline $b_rmse")
  fi
  row+=" | $c_fit | $(peak_mb "$work/cand.time")"
  if [ ${#why[@]} -eq 0 ]; then
    row+=" | PASS |"
  else
    FAILED=1
    row+=" | FAIL: $(join_why "${why[@]}") |"
  fi
  ROWS+=("$row")
}

# --- run --------------------------------------------------------------------

# What was measured: the revision and the trainer as of the start (the tree
# may move on, or the trainer be relinked, while the suite runs).
trainer_stamp() { date -u -r "$TRAINER" '+%Y-%m-%d %H:%M:%S UTC' 2>/dev/null || echo '?'; }
REV="$(git -C "$RECSYS_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$RECSYS_ROOT" diff --quiet 2>/dev/null || echo '+dirty')"
TRAINER_STAMP="$(trainer_stamp)"
note "trainer $TRAINER (built $TRAINER_STAMP); data $DATA; work files in $SUITE"
note "sets $SETS; kinds $MODELS; candidate $CANDIDATE; --threads=$THREADS"
SUITE_START="$(now)"
for s in "${SET_LIST[@]}"; do
  case "$s" in
    ml100k) run_ml100k ;;
    *) run_split_set "$s" ;;
  esac
done

# --- report -----------------------------------------------------------------

report() {
  local header="| set | users | items | ratings (train) | popularity nDCG@10 (ref) | PureSVD k=20 nDCG@10 (ref) | bar = 1.05 × max"
  local sep="|---|---:|---:|---:|---:|---:|---:"
  local m
  for m in "${MODEL_LIST[@]}"; do header+=" | $m nDCG@10"; sep+="|---:"; done
  header+=" | $CANDIDATE nDCG@10 (score_topn.py) | $CANDIDATE P@10 | $CANDIDATE RMSE"
  sep+="|---:|---:|---:"
  if has_model baseline && [ "$CANDIDATE" != baseline ]; then header+=" | baseline RMSE"; sep+="|---:"; fi
  header+=" | $CANDIDATE fit s | peak RSS MB | result |"
  sep+="|---:|---:|---|"
  echo "## Development suite: $(date -u '+%Y-%m-%d %H:%M UTC'), $REV at the start"
  echo
  echo "Trainer $TRAINER, built $TRAINER_STAMP."
  if [ "$(trainer_stamp)" != "$TRAINER_STAMP" ]; then
    echo "**Warning: the trainer was rebuilt during the run (now $(trainer_stamp)); steps that started after that used the new binary.**"
  fi
  echo
  echo "Kinds $MODELS; $CANDIDATE is held to the bar (nDCG@10 ≥ bar, RMSE ≤ baseline's)." \
    "Relevant = test rating ≥ $REL_MIN (lastfm, implicit: every test pair); --threads=$THREADS; splits: split.py seed $SPLIT_SEED."
  echo
  echo "$header"
  echo "$sep"
  printf '%s\n' "${ROWS[@]}"
  if [ ${#CHOSEN[@]} -gt 0 ]; then
    echo
    echo "### What $CANDIDATE chose"
    echo
    local c
    for c in "${CHOSEN[@]}"; do echo "- ${c%%|*}: ${c#*|}"; done
  fi
  echo
  echo "### Timings (wall seconds)"
  echo
  echo "| set | step | s |"
  echo "|---|---|---:|"
  local t
  for t in "${TIMINGS[@]}"; do echo "| ${t//|/ | } |"; done
  echo "| all | total | $(elapsed "$SUITE_START") |"
  echo
  echo "### Evaluator output"
  local i
  for ((i = 0; i < ${#DETAILS[@]}; i += 2)); do
    echo
    echo "${DETAILS[i]}:"
    echo '```'
    cat "${DETAILS[i + 1]}"
    echo '```'
  done
}
report >"$SUITE/results.md.tmp"
mv "$SUITE/results.md.tmp" "$SUITE/results.md"
# The terminal gets the summary and the timings; results.md also has the
# evaluator tables.
sed '/^### Evaluator output/,$d' "$SUITE/results.md"
note "written $SUITE/results.md"
[ "$(trainer_stamp)" = "$TRAINER_STAMP" ] ||
  note "warning: $TRAINER was rebuilt during the run (was $TRAINER_STAMP, now $(trainer_stamp))"
skipped=""
[ ${#SKIPPED[@]} -eq 0 ] || skipped=" (skipped for want of data: ${SKIPPED[*]})"
if [ ${#SKIPPED[@]} -eq ${#SET_LIST[@]} ]; then
  die "no set ran: none had its data (looked in $DATA; set RECSYS_DATA_DIR)"
fi
if [ "$FAILED" -ne 0 ]; then
  note "FAIL: a quality check failed (see the result column)$skipped"
  exit 3
fi
note "PASS: every check passed$skipped"
