#!/usr/bin/env bash
# The full, reproducible recipe of gleansr's bundled model `glean_glyphs_8x` (GLEAN 16 -> 128, x8):
#
#   fonts -> glyph data set -> StyleGAN2 bank -> GLEAN with that bank -> the ablation (the same
#   encoder-decoder without the bank) and a control (GLEAN with a random frozen bank), all with
#   the same budget -> export -> bicubic / ablation / control / GLEAN on held-out fonts.
#
# Why glyphs: letters have real structure (strokes, serifs, bowls), Debian ships hundreds of freely
# licensed fonts (SIL OFL, GPL with the font exception, Apache, GUST, LPPL, Bitstream Vera), so
# the data needs no download and whole font designs can be held out (see gleansr/glyphs/render.py).
#
# Usage (from the repository root, after ./setup.sh):
#   sudo apt-get install -y --no-install-recommends $(scripts/train_glyph_model.sh --packages)
#   PROFILE=cpu scripts/train_glyph_model.sh           # 2 CPU cores, about 2 hours in all
#   PROFILE=gpu DEVICE=cuda scripts/train_glyph_model.sh
# Rerunning continues where it stopped: the data set is kept, training runs resume from their
# folders (ITERS may be raised), evaluation and export are redone.
#
# Settings (environment):
#   PROFILE      cpu | gpu: iteration counts (default cpu: bank 4000, GLEAN runs 1000 each, 600
#                test images, about 1.5 hours on 2 idle cores; gpu: bank 20000, GLEAN runs 8000)
#   WORK         run folder (default runs/glyphs)
#   DEVICE       auto | cpu | cuda (default auto)
#   BANK_ITERS   StyleGAN2 bank iterations          ITERS  iterations of each GLEAN-type run
#   BATCH        GLEAN batch (default 8)            BANK_BATCH  bank batch (default 8)
#   LR           GLEAN Adam learning rate, G and D (default 2e-4)
#   PRECISION    GLEAN-type runs' compute: fp32 | bf16 | fp16 (default bf16: 1.7x faster on CPUs
#                with AVX-512 BF16 or AMX, and on GPUs); the bank always trains in fp32
#   GAN_WEIGHT   GLEAN adversarial weight (default 0: pixel loss only, so the two runs differ
#                only by the bank; upstream uses 1e-2 with a perceptual loss whose VGG16 weights
#                cannot be had offline, so the perceptual loss is always off here)
#   BANK_R1      R1 gamma (default 0.5: StyleGAN2-ADA's 0.0002 * 128^2 / batch 8, rounded up)
#   BANK_PL      path-length weight (default 0: off, it costs time and small banks need it less)
#   BANK_EMA_KIMG  EMA half-life in thousands of images (default 2, short runs)
#   WORKERS      data-loading processes (default 2)
#   EVAL_LIMIT   evaluate this many held-out images, evenly spread (default: PROFILE's)
#   FONT_DIRS    font folders to use instead of the packages' files (not the published recipe)
#   UNTIL        stop after this step: fonts | data | bank | glean | ablation | control | export | evaluate
#   SHIP=1       copy the GLEAN weights into src/gleansr/assets (refuses to replace a file there
#                unless SHIP=overwrite)
set -euo pipefail

FONT_PACKAGES=(
  # sans
  fonts-dejavu-core fonts-dejavu-extra fonts-liberation2 fonts-croscore fonts-crosextra-carlito
  fonts-open-sans fonts-roboto-unhinted fonts-lato fonts-cantarell fonts-comfortaa fonts-cabin
  fonts-karla fonts-dosis fonts-quicksand fonts-inter fonts-manrope fonts-b612 fonts-oxygen fonts-play
  fonts-jura fonts-league-spartan fonts-clear-sans fonts-comic-neue fonts-tuffy fonts-sora fonts-opendin
  fonts-adf-gillius fonts-adf-switzera fonts-adf-verana fonts-allerta fonts-national-park
  fonts-opendyslexic fonts-ocr-b
  # serif
  fonts-crosextra-caladea fonts-roboto-slab fonts-linuxlibertine fonts-ebgaramond fonts-texgyre
  fonts-urw-base35 fonts-lmodern fonts-vollkorn fonts-sil-gentiumplus fonts-sil-charis fonts-sil-andika
  fonts-sil-doulos fonts-junicode fonts-goudybookletter fonts-oldstandard fonts-yrsa-rasa
  fonts-quattrocento fonts-stix fonts-freefont-ttf fonts-fanwood fonts-prociono fonts-gfs-neohellenic
  fonts-arapey fonts-adf-accanthis fonts-adf-baskervald fonts-adf-berenis fonts-adf-ikarius
  fonts-adf-irianis fonts-adf-libris fonts-adf-mekanus fonts-adf-oldania fonts-adf-romande
  fonts-adf-solothurn fonts-adf-tribun fonts-adf-universalis fonts-gotico-antiqua
  # monospace
  fonts-inconsolata fonts-hack fonts-firacode fonts-jetbrains-mono fonts-anonymous-pro fonts-mononoki
  fonts-fantasque-sans fonts-go fonts-courier-prime fonts-league-mono fonts-hermit fonts-noto-mono
  # display, script, handwriting
  fonts-lobster fonts-lobstertwo fonts-dancingscript fonts-kaushanscript fonts-leckerli-one
  fonts-yanone-kaffeesatz fonts-cabinsketch fonts-averia-gwf fonts-averia-sans-gwf
  fonts-averia-serif-gwf fonts-isabella fonts-humor-sans fonts-dkg-handwriting fonts-femkeklaver
  fonts-engadget
)
# Not used: fonts-cardo (one file's name table says "non-commercial", unlike its Debian licence),
# fonts-noto-core (hundreds of script fonts whose Latin is Noto Sans again).

if [ "${1:-}" = "--packages" ]; then
  echo "${FONT_PACKAGES[@]}"
  exit 0
fi

cd "$(dirname "$0")/.."
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
GLEANSR=${GLEANSR:-"$PY -m gleansr.cli"}
WORK=${WORK:-runs/glyphs}
DEVICE=${DEVICE:-auto}
PROFILE=${PROFILE:-cpu}
# On the project's 2-core machine (idle) one batch-8 iteration takes about 1.05 s for the bank
# (fp32, lazy R1) and 0.5 s for GLEAN (bf16, pixel loss only, so no discriminator step): the cpu
# profile's bank takes about 70 min and its three GLEAN-type runs about 20 min together.
case "$PROFILE" in
  cpu) BANK_ITERS=${BANK_ITERS:-4000}; ITERS=${ITERS:-1000}; EVAL_LIMIT=${EVAL_LIMIT:-600} ;;
  gpu) BANK_ITERS=${BANK_ITERS:-20000}; ITERS=${ITERS:-8000} ;;
  *) echo "PROFILE must be cpu or gpu, got $PROFILE" >&2; exit 2 ;;
esac
BATCH=${BATCH:-8}
BANK_BATCH=${BANK_BATCH:-8}
LR=${LR:-2e-4}
PRECISION=${PRECISION:-bf16}
GAN_WEIGHT=${GAN_WEIGHT:-0}
BANK_R1=${BANK_R1:-0.5}
BANK_PL=${BANK_PL:-0}
BANK_EMA_KIMG=${BANK_EMA_KIMG:-2}
WORKERS=${WORKERS:-2}
SAVE_EVERY=$(( ITERS / 5 > 0 ? ITERS / 5 : 1 ))
BANK_SAVE_EVERY=$(( BANK_ITERS / 5 > 0 ? BANK_ITERS / 5 : 1 ))
ASSET=src/gleansr/assets/glean_glyphs_8x.safetensors
mkdir -p "$WORK"
step() { printf '\n== %s  (%s)\n' "$1" "$(date '+%F %T')"; }
finished() { if [ "${UNTIL:-}" = "$1" ]; then echo "stopping after step $1 (UNTIL=$1)"; exit 0; fi; }

# The architecture comes from the model's declaration, so recipe and package cannot drift apart.
read -r CH_MAX CH_MULT STYLE MLPS < <("$PY" -c "from gleansr.zoo import GLYPHS_8X_CONFIG as c
print(c.channel_max, c.channel_multiplier, c.style_channels, c.num_mlps)")

step "fonts"
if [ -n "${FONT_DIRS:-}" ]; then
  read -r -a FONTS <<< "$FONT_DIRS"
else
  missing=()
  for pkg in "${FONT_PACKAGES[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing font packages; install them with:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 2
  fi
  # Exactly the listed packages' font files, as links named <package>/<path under /usr/share>.
  if [ ! -d "$WORK/fonts" ]; then
    tmp=$(mktemp -d "$WORK/.fonts.XXXXXX")
    for pkg in "${FONT_PACKAGES[@]}"; do
      dpkg -L "$pkg" | grep -iE '\.(ttf|otf|ttc|otc)$' | while read -r file; do
        [ -f "$file" ] || continue
        link="$tmp/$pkg/${file#/usr/share/}"
        mkdir -p "$(dirname "$link")" && ln -s "$file" "$link"
      done
    done
    dpkg-query -W -f '${Package} ${Version}\n' "${FONT_PACKAGES[@]}" > "$WORK/font-packages.txt"
    mv "$tmp" "$WORK/fonts"
  fi
  FONTS=("$WORK/fonts")
  echo "$(find -L "$WORK/fonts" -type f | wc -l) font files from ${#FONT_PACKAGES[@]} packages (versions: $WORK/font-packages.txt)"
fi
finished fonts

step "data: glyph images, held-out font designs"
if [ ! -f "$WORK/data/manifest.json" ]; then
  $GLEANSR data glyphs --fonts "${FONTS[@]}" -o "$WORK/data" --size 128 --test-fraction 0.1 --seed 0 --quiet
fi
finished data

step "bank: StyleGAN2 at 128 px on the training glyphs ($BANK_ITERS iterations)"
$GLEANSR bank train --data "$WORK/data/train" --out "$WORK/bank" \
  --set size=128 channel_max="$CH_MAX" channel_multiplier="$CH_MULT" style_channels="$STYLE" num_mlps="$MLPS" \
  r1_gamma="$BANK_R1" pl_weight="$BANK_PL" ema_kimg="$BANK_EMA_KIMG" sample_every="$BANK_SAVE_EVERY" \
  --batch-size "$BANK_BATCH" --max-iters "$BANK_ITERS" --save-every "$BANK_SAVE_EVERY" --num-workers "$WORKERS" \
  --device "$DEVICE" --quiet
finished bank

# One training config for the three runs; they differ only in the bank (trained, none, random).
"$PY" - "$WORK/glean_glyphs_8x.json" "$BATCH" "$LR" "$GAN_WEIGHT" "$WORKERS" "$ITERS" "$SAVE_EVERY" "$PRECISION" <<'EOF'
import json, sys
from gleansr.zoo import GLYPHS_8X_CONFIG
path, batch, lr, gan, workers, iters, save, precision = sys.argv[1:]
config = {"model": GLYPHS_8X_CONFIG.to_dict(), "batch_size": int(batch), "lr_g": float(lr), "lr_d": float(lr),
          "perceptual_weight": 0.0, "gan_weight": float(gan), "num_workers": int(workers), "max_iters": int(iters),
          "save_every": int(save), "log_every": 50, "seed": 0, "precision": precision}
open(path, "w").write(json.dumps(config, indent=1) + "\n")
EOF

step "GLEAN: encoder-decoder with the trained bank ($ITERS iterations)"
$GLEANSR train "$WORK/glean_glyphs_8x.json" --data "$WORK/data/train" --out "$WORK/glean" \
  --bank "$WORK/bank/bank.pth" --max-iters "$ITERS" --device "$DEVICE" --quiet
finished glean

step "ablation: the same encoder-decoder and budget without the bank (the paper's ablation)"
$GLEANSR train "$WORK/glean_glyphs_8x.json" --data "$WORK/data/train" --out "$WORK/ablation" \
  --set model.latent_bank=false --max-iters "$ITERS" --device "$DEVICE" --quiet
finished ablation

step "control: GLEAN with a random frozen bank (same features and cost, no generative prior)"
$GLEANSR train "$WORK/glean_glyphs_8x.json" --data "$WORK/data/train" --out "$WORK/random_bank" \
  --bank random --max-iters "$ITERS" --device "$DEVICE" --quiet
finished control

step "export: generators as safetensors with their config"
"$PY" - "$WORK" <<'EOF'
import sys
from gleansr.loading import export_release
work = sys.argv[1]
for run in ("glean", "ablation", "random_bank"):
    print(export_release(f"{work}/{run}", f"{work}/{run}.safetensors", "safetensors", overwrite=True))
EOF
finished export

step "evaluate: bicubic / ablation / control / GLEAN on the held-out fonts"
"$PY" scripts/eval_ablation.py --hr "$WORK/data/test" --model "glean=$WORK/glean.safetensors" \
  --model "ablation (no bank)=$WORK/ablation.safetensors" --model "random frozen bank=$WORK/random_bank.safetensors" \
  --device "$DEVICE" ${EVAL_LIMIT:+--limit "$EVAL_LIMIT"} \
  --markdown "$WORK/results.md" --json "$WORK/results.json"
finished evaluate

step "check: the bundled samples are held-out glyphs of this data set"
"$PY" - "$WORK/data/manifest.json" src/gleansr/assets/samples <<'EOF'
import json, sys
from pathlib import Path
test = {f["name"] for f in json.load(open(sys.argv[1]))["fonts"] if f["split"] == "test"}
names = sorted(p.stem for p in Path(sys.argv[2], "lr").glob("*.png"))
bad = [n for n in names if n.rsplit("_u", 1)[0] not in test]
if bad:
    sys.exit(f"samples {bad} are not from this data set's test fonts; regenerate them with "
             "gleansr.glyphs.render.write_demo_samples(DATA, 'src/gleansr/assets/samples', overwrite=True)")
print(f"{len(names)} samples, all from test fonts")
EOF

if [ -n "${SHIP:-}" ]; then
  step "ship: $ASSET"
  if [ -e "$ASSET" ] && [ "$SHIP" != overwrite ]; then
    echo "$ASSET exists; SHIP=overwrite replaces it" >&2
    exit 2
  fi
  cp "$WORK/glean.safetensors" "$ASSET.tmp" && mv "$ASSET.tmp" "$ASSET"
  $GLEANSR demo -o "$WORK/demo" --overwrite
fi
echo "results: $WORK/results.md  bank samples: $WORK/bank/samples/"
